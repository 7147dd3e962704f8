"""Reference profiles as JSON files in a directory: ``<root>/<model>/<version>.json``."""

from __future__ import annotations

from pathlib import Path

from driftline.stream.monitor.profile import ProfileError, ReferenceProfile

__all__ = ["ProfileDirectory"]


class ProfileDirectory:
    """A directory of reference profiles, one JSON file per model version.

    Examples
    --------
    >>> import tempfile
    >>> directory = ProfileDirectory(Path(tempfile.mkdtemp()))
    >>> directory.path("credit_risk", "v1/rc 2").name
    'v1_rc_2.json'
    >>> directory.load_all("credit_risk")
    []
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, model: str, model_version: str) -> Path:
        """Where the profile of one model version is stored (unsafe characters of the version become ``_``)."""
        safe_version = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_version)
        return self.root / model / f"{safe_version}.json"

    def save(self, profile: ReferenceProfile) -> Path:
        """Write ``profile`` atomically (a crash never leaves a half-written file); return its path."""
        path = self.path(profile.model, profile.model_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(profile.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path

    def load(self, model: str, model_version: str) -> ReferenceProfile:
        """The profile of one model version.

        Raises
        ------
        ProfileError
            There is none, or it does not parse.
        """
        path = self.path(model, model_version)
        try:
            return ReferenceProfile.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ProfileError(f"no reference profile for {model} {model_version} at {path}; run `driftline baseline`") from exc

    def load_all(self, model: str) -> list[str]:
        """The JSON of every profile of ``model``, by file name (empty if there is none)."""
        return [path.read_text(encoding="utf-8") for path in sorted((self.root / model).glob("*.json"))]
