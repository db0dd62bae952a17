"""Speech for each sentence: a flite voice at a drawn speed, with white noise mixed in at a drawn SNR.

Each utterance's voice, speed, SNR and noise come from a generator seeded with (seed, utterance id), so they do
not depend on which other sentences were chosen or on the order of work. Files are cached under a name that
hashes everything that shapes them, so a rerun reuses them and a change of text or settings renders anew.
"""

import hashlib
import json
import os
import random
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

VOICES = ("kal16", "awb", "rms", "slt")  # flite's 16 kHz voices (the decoder's model is 16 kHz; "kal" is 8 kHz)
STRETCH = (0.9, 1.15)  # flite duration_stretch: > 1 is slower
SNR_DB = (30.0, 45.0)  # decoder 1-best WER was ~43% at 25 dB, ~25% at 35 dB (12 sentences, all voices)
SAMPLE_RATE = 16000
WAV_HEADER_BYTES = 44  # what the wave module writes for 16-bit PCM; the decoder is told to skip it (-adchdr)


@dataclass(frozen=True)
class Rendering:
    voice: str
    stretch: float
    snr_db: float


def _generator_seed(seed: int, utterance_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{utterance_id}".encode()).digest()[:8], "little")


def draw_rendering(seed: int, utterance_id: str) -> Rendering:
    rng = random.Random(_generator_seed(seed, utterance_id))
    return Rendering(rng.choice(VOICES), round(rng.uniform(*STRETCH), 3), round(rng.uniform(*SNR_DB), 1))


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise at `snr_db` below the utterance's mean power; scaled down as a whole if it would clip."""
    signal = samples.astype(np.float64)
    noise_power = np.mean(signal**2) / 10 ** (snr_db / 10)
    mixed = signal + rng.normal(0.0, np.sqrt(noise_power), size=signal.shape)
    peak = np.max(np.abs(mixed))
    if peak > 32767:
        mixed *= 32767 / peak
    return np.round(mixed).astype(np.int16)


def _read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as handle:
        if (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise RuntimeError(f"{path}: flite wrote {handle.getframerate()} Hz, {handle.getnchannels()} channel(s), "
                               f"{8 * handle.getsampwidth()}-bit audio; expected 16 kHz mono 16-bit")
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")


def _write_wav_atomic(path: str, samples: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".wav")
    os.close(fd)
    try:
        with wave.open(tmp, "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(SAMPLE_RATE)
            handle.writeframes(samples.astype("<i2").tobytes())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def render(text: str, rendering: Rendering, path: str, seed: int, utterance_id: str) -> None:
    """Synthesize `text` with flite, mix in noise, write a 16 kHz 16-bit mono WAV file to `path`."""
    with tempfile.TemporaryDirectory() as tmp:
        clean = os.path.join(tmp, "clean.wav")
        command = ["flite", "-voice", rendering.voice, "--setf", f"duration_stretch={rendering.stretch}",
                   "-t", text, "-o", clean]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(clean):
            raise RuntimeError(f"flite failed on {utterance_id}: {result.stderr.strip() or result.returncode}")
        samples = _read_wav(clean)
    noisy = add_noise(samples, rendering.snr_db, np.random.default_rng(_generator_seed(seed, utterance_id)))
    _write_wav_atomic(path, noisy)


def audio_path(audio_dir: str, utterance_id: str, text: str, rendering: Rendering, seed: int) -> str:
    key = json.dumps([text, asdict(rendering), seed, SAMPLE_RATE], sort_keys=True)
    return os.path.join(audio_dir, f"{utterance_id}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.wav")


def render_all(items: list[tuple[str, str]], audio_dir: str, seed: int, jobs: int) -> dict[str, tuple[str, Rendering]]:
    """Audio for (utterance id, text) pairs: {id: (wav path, rendering)}, reusing cached files."""
    os.makedirs(audio_dir, exist_ok=True)
    planned = {}
    for utterance_id, text in items:
        rendering = draw_rendering(seed, utterance_id)
        planned[utterance_id] = (audio_path(audio_dir, utterance_id, text, rendering, seed), rendering, text)
    todo = [(text, rendering, path, seed, uid) for uid, (path, rendering, text) in planned.items()
            if not os.path.exists(path)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda arguments: render(*arguments), todo))
    print(f"audio: {len(items) - len(todo)} cached, {len(todo)} synthesized in {audio_dir}", flush=True)
    return {uid: (path, rendering) for uid, (path, rendering, _) in planned.items()}
