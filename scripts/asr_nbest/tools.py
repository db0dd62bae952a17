"""The Debian packages the recognizer needs: check them, install the missing ones with apt-get, report versions."""

import os
import shutil
import subprocess
import sys

MODEL_DIR = "/usr/share/pocketsphinx/model/en-us"
ACOUSTIC_MODEL = f"{MODEL_DIR}/en-us"
TRIGRAM = f"{MODEL_DIR}/en-us.lm.bin"
DICTIONARY = f"{MODEL_DIR}/cmudict-en-us.dict"
SYSTEM_PYTHON = "/usr/bin/python3"
EXPECTED_DECODER = "0.8+5prealpha"  # lattice.py reproduces this version's bestpath scoring

# package -> a check that it is installed
PACKAGES = {
    "pocketsphinx": lambda: shutil.which("pocketsphinx_batch") is not None,
    "pocketsphinx-en-us": lambda: all(os.path.exists(p) for p in (ACOUSTIC_MODEL, TRIGRAM, DICTIONARY)),
    "flite": lambda: shutil.which("flite") is not None,
    "python3-sphinxbase": lambda: os.path.exists(SYSTEM_PYTHON) and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sphinxbase.sphinxbase"], capture_output=True).returncode == 0,
}


def missing_packages() -> list[str]:
    return [name for name, installed in PACKAGES.items() if not installed()]


def ensure_packages(install: bool = True) -> None:
    """Install what is missing with apt-get (as root); otherwise stop with the command that would."""
    missing = missing_packages()
    if not missing:
        return
    command = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(missing)
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"missing Debian packages: {', '.join(missing)}. Install them with:\n  sudo sh -c '{command}'")
    print(f"installing {', '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    still_missing = missing_packages()
    if still_missing:
        sys.exit(f"apt-get finished but these are still not usable: {', '.join(still_missing)}")


def package_versions() -> dict[str, str]:
    """Installed version of each package, as dpkg reports it."""
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *PACKAGES],
                            capture_output=True, text=True)
    versions = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    decoder = versions.get("pocketsphinx", "")
    if EXPECTED_DECODER not in decoder:
        print(f"warning: pocketsphinx {decoder or '(unknown version)'} is not {EXPECTED_DECODER}: the lattice "
              "scores may not reproduce its ranking", file=sys.stderr)
    return versions


def dictionary_words() -> set[str]:
    """The words the recognizer can say: CMUdict entries without their pronunciation variant suffix."""
    with open(DICTIONARY, encoding="utf-8") as handle:
        return {line.split(maxsplit=1)[0].split("(")[0] for line in handle if line.strip()}
