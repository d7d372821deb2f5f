"""``make demo``: a sample repository on loopback, installed through the CLI with progress.

Everything happens in a temporary folder and on 127.0.0.1: sample models made of
random bytes are published with ``model-manager-repo``, signed with a key made for
this run, served by the reference server (throttled so the progress bars are worth
watching), installed with ``model-manager`` through a sidecar that trusts only that
key, and everything, the key included, is removed at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from rich.console import Console

from model_repo.background import BackgroundServer
from model_repo.layout import StorageLayout
from sidecar.signature import parse_public_key

MB = 1024 * 1024
THROTTLE = 2 * MB  # bytes per second per file: a few seconds of progress

# id → (version, name, task, languages, requires, {path: size or text})
SAMPLES: dict[str, tuple[str, str, str, str, list[str], dict[str, int | str]]] = {
    "align-zh": (
        "1.0.0", "Forced alignment (zh, demo)", "alignment", "zh", [],
        {"align.bin": 3 * MB, "config.json": '{"sample_rate": 16000}'},
    ),
    "whisper-small-zh": (
        "1.0.0", "Whisper Small (zh, demo)", "asr", "zh,en", ["align-zh@1.0.0"],
        {
            "model.bin": 6 * MB,
            "config.json": '{"d_model": 768, "layers": 12}',
            "tokenizer.json": '{"vocab_size": 51865}',
        },
    ),
    "marian-zh-en": (
        "2.1.0", "Marian zh→en (demo)", "translation", "zh,en", [],
        {
            "encoder.bin": 2 * MB,
            "decoder.bin": 2 * MB,
            "vocab/source.spm": 256 * 1024,
            "vocab/target.spm": 256 * 1024,
            "config.json": '{"beam": 4}',
        },
    ),
}  # fmt: skip
USAGE = {"marian-zh-en": 7, "whisper-small-zh": 4, "align-zh": 1}


class Demo:
    def __init__(self, workdir: Path, console: Console) -> None:
        self.workdir = workdir
        self.console = console
        self.storage = workdir / "repository"
        self.home = workdir / "home"
        self.key = "keys/demo.key"  # in workdir: made for this run, gone with it
        self.trusted = ""  # its public key, once made
        self.failures: list[str] = []

    def step(self, title: str) -> None:
        self.console.rule(f"[bold cyan]{title}")

    def run(self, shown: str, args: list[str], expect: int = 0) -> None:
        """Run a command as a user would, output straight to the terminal."""
        self.console.print(f"[bold green]$[/] {shown}", highlight=False)
        code = subprocess.call([sys.executable, "-m", *args], cwd=self.workdir)
        if code != expect:
            self.failures.append(f"{shown} exited {code}, expected {expect}")

    def make_samples(self) -> None:
        self.step("1. Sample models (random bytes, made locally)")
        for model_id, (version, *_, files) in SAMPLES.items():
            folder = self.workdir / "sources" / model_id
            for path, content in files.items():
                target = folder / path
                target.parent.mkdir(parents=True, exist_ok=True)
                data = os.urandom(content) if isinstance(content, int) else content.encode()
                target.write_bytes(data)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            self.console.print(f"  {model_id}@{version}: {len(files)} files, {size / MB:.1f} MB")

    def publish(self) -> None:
        self.step("2. Publish them into a repository tree, signed with a demo key")
        (self.workdir / self.key).parent.mkdir()
        self.run(f"model-manager-repo keygen {self.key}", ["model_repo", "keygen", self.key])
        self.trusted = (self.workdir / f"{self.key}.pub").read_text().strip()
        for model_id, (version, name, task, languages, requires, _) in SAMPLES.items():
            args = [
                "model_repo", "publish", f"sources/{model_id}", "--storage", "repository",
                "--id", model_id, "--version", version, "--name", name, "--task", task,
                "--languages", languages,
                *(arg for requirement in requires for arg in ("--requires", requirement)),
                "--sign-key", self.key,
            ]  # fmt: skip
            self.run("model-manager-repo " + shlex.join(args[1:]), args)
        files = sorted(
            p.relative_to(self.storage).as_posix()
            for p in self.storage.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        self.console.print("  tree: " + ", ".join(f for f in files if f.startswith("api/")))

    def cli(self, url: str, *command: str, expect: int = 0) -> None:
        # Flags, not the environment: a MODEL_MANAGER_SIGNATURES=off of the user's cannot
        # turn the check off.
        args = [
            "model_manager_cli", "--home", str(self.home), "--repository", url,
            "--scheduler", url, f"--sidecar-arg=--trusted-key={self.trusted}",
            "--sidecar-arg=--signatures=enforce", *command,
        ]  # fmt: skip
        self.run("model-manager " + shlex.join(command), args, expect)

    def record_usage(self, url: str) -> None:
        self.step("4. Demand reported by node agents → ranking")
        with httpx.Client(base_url=url, trust_env=False) as client:
            for model_id, count in USAGE.items():
                for n in range(count):
                    kind = "MODEL_NOT_AVAILABLE" if n % 2 else "request"
                    response = client.post(
                        "/api/model-usage/events", json={"model_id": model_id, "kind": kind}
                    )
                    response.raise_for_status()
                self.console.print(
                    f"  POST /api/model-usage/events x{count} for {model_id}", highlight=False
                )
            ranking = client.get("/api/model-usage/ranking").json()
        self.console.print(
            "  GET /api/model-usage/ranking → " + json.dumps(ranking), highlight=False
        )

    def tamper(self, url: str) -> None:
        self.step("5. A catalog changed after signing is refused")
        catalog = StorageLayout(self.storage).catalog_file
        models = json.loads(catalog.read_bytes())
        models[0]["name"] = "Changed on the way"
        catalog.write_text(json.dumps(models))
        shown = catalog.relative_to(self.workdir).as_posix()
        self.console.print(
            f"  renamed {models[0]['id']} in {shown}, as a hostile mirror could", highlight=False
        )
        self.cli(url, "list", "--refresh", expect=1)

    def main(self) -> int:
        self.make_samples()
        self.publish()
        with BackgroundServer(self.storage, bytes_per_second=THROTTLE) as server:
            self.step(f"3. Serve on {server.url}; install through the CLI")
            key_id = parse_public_key(self.trusted).key_id
            self.console.print(
                f"  the sidecar enforces signatures and trusts only the demo key, id {key_id}"
                " (getInfo: signatures.trustedKeyIds)",
                highlight=False,
            )
            self.cli(server.url, "path", "whisper-small-zh", expect=1)
            self.cli(server.url, "install", "whisper-small-zh")
            self.cli(server.url, "install", "marian-zh-en")
            self.cli(server.url, "path", "whisper-small-zh")
            self.cli(server.url, "list")
            self.record_usage(server.url)
            self.cli(server.url, "ranking")
            self.tamper(server.url)
        self.step("Done")
        if self.failures:
            for failure in self.failures:
                self.console.print(f"[bold red]unexpected:[/] {failure}", highlight=False)
            return 1
        self.console.print("Everything ran on 127.0.0.1 in a temporary folder, now removed.")
        self.console.print("\n[bold]Next, by hand[/] (any folder is a model; here schemas/):")
        for command in next_steps():
            self.console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)
        return 0


def _here(path: Path) -> str:
    """``path`` as typed from the current folder (the checkout, under ``make demo``)."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _tool(name: str) -> str:
    """The venv's copy when the demo runs from one (nothing to activate), else the PATH's."""
    script = Path(sys.executable).parent / name
    return _here(script) if script.exists() else name


def next_steps() -> list[str]:
    """Commands that work as printed once the demo's repository is gone: a repository of
    one's own served on :8000, the CLI against it, and the app's own question to the sidecar."""
    sample = Path(__file__).resolve().parent.parent / "schemas"
    source = _here(sample) if sample.is_dir() else "PATH/TO/MODEL-FOLDER"
    question = '{"jsonrpc":"2.0","id":1,"method":"getModelPath","params":{"modelId":"my-model"}}'
    repo, python = _tool("model-manager-repo"), _tool("python")
    return [
        f"{repo} publish {source} --storage /tmp/mm-repo --id my-model --version 1.0.0",
        f"{repo} serve --storage /tmp/mm-repo   # leave it running; in a second terminal:",
        f"{_tool('model-manager')} --home /tmp/mm-home --repository http://127.0.0.1:8000"
        " install my-model",
        f"echo '{question}' | {python} -m sidecar --home /tmp/mm-home",
    ]


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="model-manager-demo-") as workdir:
        try:
            code = Demo(Path(workdir), console).main()
        except KeyboardInterrupt:
            console.print("interrupted; cleaning up")
            code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
