"""Tests of astrodeblend._checkpoint: atomic saving, safe loading, hashes, strict loading."""

import os
import pickle

import pytest

torch = pytest.importorskip("torch")

from astrodeblend import CheckpointError  # noqa: E402
from astrodeblend._checkpoint import (  # noqa: E402
    load_checkpoint,
    load_models,
    save_checkpoint,
    weights_hash,
)
from astrodeblend.models import ModelConfig, build_models  # noqa: E402

SMALL = ModelConfig(generator_channels=4, generator_depth=2, detector_channels=4,
                    detector_depth=2, discriminator_channels=4, discriminator_layers=2)


def _payload(config=SMALL):
    torch.manual_seed(0)
    models = build_models(config)
    return {"format": "astrodeblend-checkpoint", "version": 1, "epoch": 3,
            "model_config": config.to_dict(),
            "models": {k: m.state_dict() for k, m in models.items()},
            "history": [{"epoch": 1, "val_psnr": 20.5}], "note": None,
            "rng": {"torch": torch.get_rng_state(), "python": [3, [1, 2, 3], None]}}


def test_round_trip(tmp_path):
    path = tmp_path / "ck.pt"
    payload = _payload()
    assert save_checkpoint(path, payload) == path
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["history"] == payload["history"]
    for name, state in payload["models"].items():
        for key, value in state.items():
            assert torch.equal(back["models"][name][key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]     # no temporary file left
    save_checkpoint(path, {"epoch": 4})                              # replaced atomically
    assert load_checkpoint(path) == {"epoch": 4}


def test_weights_hash():
    state = build_models(SMALL)["generator"].state_dict()
    digest = weights_hash(state)
    assert len(digest) == 64
    assert weights_hash(dict(reversed(list(state.items())))) == digest
    changed = {k: v.clone() for k, v in state.items()}
    key = next(iter(changed))
    changed[key].view(-1)[0] += 1e-6
    assert weights_hash(changed) != digest
    # networks with BatchNorm hold 0-d integer tensors (num_batches_tracked)
    counted = {"w": torch.ones(2), "num_batches_tracked": torch.tensor(3)}
    assert weights_hash(counted) != weights_hash({**counted,
                                                  "num_batches_tracked": torch.tensor(4)})


def test_missing_corrupt_and_not_dict(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(200))
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, _payload())
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(CheckpointError, match="does not hold a dict"):
        load_checkpoint(listed)
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


class _Evil:
    """An object whose unpickling runs a shell command."""

    marker = None

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_not_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save({"epoch": 1, "payload": evil}, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump({"epoch": 1, "payload": evil}, handle)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_models(path)
    assert not marker.exists()


def test_load_models(tmp_path):
    path = tmp_path / "ck.pt"
    payload = _payload()
    save_checkpoint(path, payload)
    models, config = load_models(path, device="cpu")
    assert config == SMALL
    assert not models["generator"].training
    for key, value in payload["models"]["generator"].items():
        assert torch.equal(models["generator"].state_dict()[key], value)
    only, _ = load_models(payload, names=["generator"])
    assert list(only) == ["generator"]
    with pytest.raises(CheckpointError, match="no sample generator"):
        load_models(payload, names=["sample_generator"])


def test_load_models_refuses_other_architecture(tmp_path):
    payload = _payload()
    wider = _payload(ModelConfig(**{**SMALL.to_dict(), "generator_channels": 8}))
    mixed = {**payload, "models": {**payload["models"],
                                   "generator": wider["models"]["generator"]}}
    with pytest.raises(CheckpointError, match=r"does not match the model \(generator\): .*shape"):
        load_models(mixed)
    deeper = _payload(ModelConfig(**{**SMALL.to_dict(), "generator_depth": 3}))
    mixed = {**payload, "models": {"generator": deeper["models"]["generator"]}}
    with pytest.raises(CheckpointError, match="does not match the model.*unexpected keys"):
        load_models(mixed)
    path = tmp_path / "plain.pt"
    save_checkpoint(path, {"weights": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="holds no astrodeblend model"):
        load_models(path)
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_models({"model_config": {"colour": 1}, "models": {}})
