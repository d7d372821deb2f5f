"""Where everything lives in a repository's storage folder.

    <storage>/
      models/<id>/<version>/<files...>     → GET /storage/models/<id>/<version>/<path>
      models/<id>/<version>/checksum.sha256
      models/<id>/<version>/manifest.json  (the version's catalog entry + model metadata)
      models/<id>/model.json               (model-level settings: the default version)
      api/models.json                      → GET /api/models
      api/models/<id>.json                 → GET /api/models/<id>
      api/signatures/models.sig            → GET /api/signatures/models (publish --sign-key)
      api/signatures/models/<id>.sig       → GET /api/signatures/models/<id>
      .staging/                            (publishes in progress; never served)
      .publish.lock                        (one publisher at a time)

``api/models.json`` sits beside ``api/models/`` rather than inside it, so no model id
(not even ``index``) can collide with the list file. Signatures have a tree of their own
for the same reason: ``/api/models/<id>.sig`` would be the entry of a model ``<id>.sig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKSUM_FILE = "checksum.sha256"
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.json"
# Files a publish writes into a version folder itself; a source may not bring its own.
RESERVED_NAMES = frozenset({CHECKSUM_FILE, MANIFEST_FILE})


@dataclass(frozen=True)
class StorageLayout:
    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def api(self) -> Path:
        return self.root / "api"

    @property
    def catalog_file(self) -> Path:
        return self.api / "models.json"

    @property
    def entries(self) -> Path:
        return self.api / "models"

    @property
    def signatures(self) -> Path:
        return self.api / "signatures" / "models"

    @property
    def catalog_signature(self) -> Path:
        return self.api / "signatures" / "models.sig"

    def entry_signature(self, model_id: str) -> Path:
        return self.signatures / f"{model_id}.sig"

    @property
    def staging(self) -> Path:
        return self.root / ".staging"

    @property
    def lock_file(self) -> Path:
        return self.root / ".publish.lock"

    def entry_file(self, model_id: str) -> Path:
        return self.entries / f"{model_id}.json"

    def model_dir(self, model_id: str) -> Path:
        return self.models / model_id

    def version_dir(self, model_id: str, version: str) -> Path:
        return self.models / model_id / version
