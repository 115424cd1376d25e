"""tlhelpers.settings is the one place that reads TLHELPERS_* variables; the README's table lists the same ones."""

import re
from pathlib import Path

import pytest

from tlhelpers import settings

README = Path(__file__).resolve().parents[1] / "README.md"
PACKAGE = Path(__file__).resolve().parents[1] / "tlhelpers"


def test_readme_settings_table_matches_settings():
    documented = set(re.findall(r"^\| `(TLHELPERS_\w+)` \|", README.read_text(), flags=re.M))
    assert documented == {name for name, _, _ in settings.SETTINGS}


def test_only_settings_reads_tlhelpers_variables():
    readers = [
        p.name
        for p in PACKAGE.rglob("*.py")
        if p.name != "settings.py" and re.search(r"environ(?:\.get)?\(?\[?\s*[\"']TLHELPERS_", p.read_text())
    ]
    assert readers == []


@pytest.mark.parametrize(
    "raw, value",
    [
        ("1", True),
        ("yes", True),
        ("TRUE", True),
        ("on", True),
        ("0", False),
        ("no", False),
        ("", False),
        ("off", False),
    ],
)
def test_flag_parses_yes_and_no(monkeypatch, raw, value):
    monkeypatch.setenv("TLHELPERS_OFFLINE", raw)
    assert settings.offline() is value


def test_flag_rejects_other_values_naming_the_variable(monkeypatch):
    monkeypatch.setenv("TLHELPERS_QUICK", "maybe")
    with pytest.raises(ValueError, match=r"\$TLHELPERS_QUICK='maybe'"):
        settings.quick_mode()
    monkeypatch.delenv("TLHELPERS_MALLOC_TUNE", raising=False)
    assert settings.malloc_tune() is True  # default on


def test_paths_follow_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path))
    monkeypatch.delenv("TLHELPERS_CIFAR_DIR", raising=False)
    assert settings.cifar_dir() == tmp_path / "cifar10-jpg"
    assert settings.torchvision_cifar_root() == tmp_path / "torchvision"
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert settings.sha256_file(f).startswith("ba7816bf")
    assert settings.verify_sha256(f, "BA7816BF") and not settings.verify_sha256(f, "00")


def test_hub_file_checksum_from_its_name(tmp_path):
    import hashlib

    from tlhelpers import settings

    data = b"weights"
    digest = hashlib.sha256(data).hexdigest()
    good, bad, plain = tmp_path / f"net-{digest[:8]}.pth", tmp_path / "net-0123abcd.pth", tmp_path / "mine.pth"
    for f in (good, bad, plain):
        f.write_bytes(data)
    assert settings.hub_hash_prefix(good.name) == digest[:8] and settings.hub_hash_prefix("mine.pth") is None
    assert settings.hub_file_ok(good) and not settings.hub_file_ok(bad) and settings.hub_file_ok(plain)
    assert not settings.hub_file_ok(tmp_path / f"missing-{digest[:8]}.pth")
    assert settings.sha256_file(good) == digest and settings.verify_sha256(good, digest[:12].upper())


@pytest.mark.parametrize("raw, value", [("CPU", "cpu"), (" cuda:1 ", "cuda:1"), ("MPS", "mps"), ("", None)])
def test_device_is_case_insensitive(monkeypatch, raw, value):
    monkeypatch.setenv("TLHELPERS_DEVICE", raw)
    assert settings.device() == value


@pytest.mark.parametrize(
    "name, raw, message",
    [
        ("TLHELPERS_DEVICE", "tpu", r"\$TLHELPERS_DEVICE='tpu' is not a device: set it to cpu, cuda, cuda:N or mps"),
        ("TLHELPERS_DATA_SOURCE", "web", r"\$TLHELPERS_DATA_SOURCE='web' is not a data source: use auto, folder"),
        ("TLHELPERS_WEIGHTS", "imagenet21k", r"\$TLHELPERS_WEIGHTS='imagenet21k' is neither auto, imagenet"),
        ("TLHELPERS_OFFLINE", "perhaps", r"\$TLHELPERS_OFFLINE='perhaps' is not a yes/no value: use 1/true"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(monkeypatch, name, raw, message):
    monkeypatch.setenv(name, raw)
    assert [line for line in settings.problems() if re.match(message, line)]
    getter = {
        "TLHELPERS_DEVICE": settings.device,
        "TLHELPERS_DATA_SOURCE": settings.data_source,
        "TLHELPERS_WEIGHTS": settings.weights,
        "TLHELPERS_OFFLINE": settings.offline,
    }[name]
    with pytest.raises(settings.SettingError, match=message):
        getter()


def test_get_device_names_the_variable_for_cpu_in_capitals_and_tpu(monkeypatch):
    from tlhelpers.device import get_device

    monkeypatch.setenv("TLHELPERS_DEVICE", "CPU")
    assert get_device(verbose=False).type == "cpu"
    monkeypatch.setenv("TLHELPERS_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"^\$TLHELPERS_DEVICE='tpu' is not a device"):
        get_device(verbose=False)


def test_weights_accepts_a_checkpoint_file(monkeypatch, tmp_path):
    f = tmp_path / "mine.pt"
    f.write_bytes(b"x")
    monkeypatch.setenv("TLHELPERS_WEIGHTS", str(f))
    assert settings.weights() == str(f) and settings.problems() == []


def test_fast_cpu_autocast_reads_cpuinfo_once_and_closes_it():
    import warnings

    from tlhelpers.device import fast_cpu_autocast

    fast_cpu_autocast.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        first = fast_cpu_autocast()
        assert all(fast_cpu_autocast() is first for _ in range(3))
        import gc

        gc.collect()  # an unclosed file would warn here, at the latest
    assert fast_cpu_autocast.cache_info().misses == 1


def test_display_path_hides_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert settings.display_path(tmp_path / ".cache" / "tlhelpers") == str(Path("~/.cache/tlhelpers"))
    assert settings.display_path(tmp_path) == "~"
    assert settings.display_path("/elsewhere/x") == str(Path("/elsewhere/x"))
