"""The company model repository: publish models into a static tree, serve it.

The tree a publish produces is plain files, so the same folder can be served by the
reference server here (``model-manager-repo serve``), by nginx (``deploy/nginx``), or
uploaded to an object store behind a CDN.
"""
