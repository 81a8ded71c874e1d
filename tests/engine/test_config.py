"""Config loading: defaults, partial files, overrides, and one clear line for every kind of bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_equals_builtin_defaults():
    assert load_config(ROOT / "configs/default.yaml") == config_from_dict({}, "x")


def test_partial_config_takes_defaults_and_seed_override(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optimizer:\n  name: sgd\n")
    cfg = load_config(f, seed=9)
    assert cfg.optimizer.name == "sgd" and cfg.seed == 9 and cfg.model == Config().model


def test_vocab_follows_new_texts_when_omitted(tmp_path):
    cfg = config_from_dict({"data": {"texts": ["b a b c"]}}, "x")
    assert cfg.model.vocab == ("<pad>", "<bos>", "<eos>", "b", "a", "c")


BAD = [
    ("seed: 1\nmodel: [unclosed\n", "c.yaml:2: YAML syntax error"),
    ("colour: red\n", "c.yaml: colour: unknown key"),
    ("model:\n  depth: 3\n", "c.yaml: model.depth: unknown key"),
    ("model:\n  d_model: sixteen\n", "c.yaml: model.d_model: must be an integer"),
    ("model:\n  d_model: 16.0\n", "c.yaml: model.d_model: must be an integer"),
    ("model:\n  d_model: true\n", "c.yaml: model.d_model: must be an integer"),
    ("model:\n  d_ff: 0\n", "c.yaml: model.d_ff: must be ≥ 1"),
    ("model:\n  d_model: 1\n  n_heads: 1\n", "c.yaml: model.d_model: must be ≥ 2 (a LayerNorm over one number"),
    ("model:\n  n_layers: -1\n", "c.yaml: model.n_layers: must be ≥ 1"),
    ("model:\n  d_model: 24\n  n_heads: 16\n", "c.yaml: model.n_heads: 16 does not divide d_model 24"),
    ("model:\n  init_std: 0\n", "c.yaml: model.init_std: must be > 0"),
    ("data:\n  texts: ['the bird sat']\nmodel:\n  vocab: ['<pad>', '<bos>', 'the', 'sat']\n",
     "c.yaml: model.vocab: missing words used in data.texts: bird"),
    ("data:\n  texts: ['']\n", "c.yaml: data.texts[0]: is empty"),
    ("data:\n  texts: []\n", "c.yaml: data.texts: must be a non-empty list"),
    ("data:\n  texts: ['the cat sat on the mat the cat sat']\n",
     "c.yaml: data.texts[0]: has 9 words but model.n_positions is 8"),
    ("optimizer:\n  lr: 0\n", "c.yaml: optimizer.lr: must be > 0"),
    ("optimizer:\n  lr: -0.1\n", "c.yaml: optimizer.lr: must be > 0"),
    ("optimizer:\n  betas: [0.9, 1.0]\n", "c.yaml: optimizer.betas[1]: must be in [0, 1)"),
    ("optimizer:\n  betas: [0.9]\n", "c.yaml: optimizer.betas: must be a list of two numbers"),
    ("optimizer:\n  eps: 0\n", "c.yaml: optimizer.eps: must be > 0"),
    ("optimizer:\n  name: lion\n", "c.yaml: optimizer.name: unknown optimizer 'lion'"),
    ("optimizer:\n  decay: some\n", "c.yaml: optimizer.decay: must be one of"),
    ("optimizer:\n  weight_decay: -1\n", "c.yaml: optimizer.weight_decay: must be ≥ 0"),
    ("train_steps: many\n", "c.yaml: train_steps: must be an integer"),
    ("- just\n- a list\n", "c.yaml: the top level must be a mapping"),
    ("model:\n  vocab: ['<pad>', '<bos>', 'the', 'the']\ndata:\n  texts: ['the']\n",
     "c.yaml: model.vocab: duplicate words: the"),
    ("seed: 1\noptimizer:\n  lr: 0.1\n  eps: 1e-8\n  lr: 0.2\n",
     "c.yaml:5: duplicate key 'lr' (first given at line 3); keep one"),
    ("optimizer: {lr: 1, lr: 2}\n", "c.yaml:1: duplicate key 'lr' (first given at line 1); keep one"),
    ("model:\n  d_ff: 8\nseed: 3\nmodel:\n  d_ff: 9\n", "c.yaml:4: duplicate key 'model' (first given at line 1)"),
    ("data:\n  texts: ['the cat']\n  texts: ['the dog']\n", "c.yaml:3: duplicate key 'texts' (first given at line 2)"),
    ("optimizer:\n  lr: -2e-1\n", "c.yaml: optimizer.lr: must be > 0, got -0.2"),
    ("optimizer:\n  lr: 1e\n", "c.yaml: optimizer.lr: must be a number, got a string '1e'"),
    ("optimizer:\n  lr: " + "9" * 400 + "\n",  # float() of it overflowed: a traceback
     "c.yaml: optimizer.lr: must be finite, got an integer of 400 digits, beyond the largest float (1.8e308)"),
    ("seed: 2024-13-45\n", "c.yaml:1: YAML syntax error: cannot read this value (month must be in 1..12)"),
    ("seed: " + "9" * 5000 + "\n", "c.yaml:1: YAML syntax error: this integer has too many digits"),
    ("seed: " + "[" * 3000 + "\n", "c.yaml: YAML nested too deeply"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[b[1].split(": ", 1)[1][:40] for b in BAD])
def test_bad_config_gives_one_clear_line(tmp_path, text, expected):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path)) and expected in msg, msg


@pytest.mark.parametrize("text,value", [("1e-3", 1e-3), ("3e4", 3e4), ("1E-5", 1e-5), (".5", 0.5), ("1.0e-3", 1e-3),
                                        ("1.5e+2", 150.0), ("+2e1", 20.0), ("1_000e-6", 1e-3), ("2", 2.0)])
def test_yaml_1_2_floats_load_as_numbers(tmp_path, text, value):
    f = tmp_path / "c.yaml"
    f.write_text(f"optimizer:\n  lr: {text}\n  eps: {text}\n")
    cfg = load_config(f)
    assert cfg.optimizer.lr == value and cfg.optimizer.eps == value and type(cfg.optimizer.lr) is float


def test_loader_leaves_pyyaml_alone_and_keeps_merge_keys(tmp_path):
    assert yaml.safe_load("lr: 1e-3") == {"lr": "1e-3"}  # yaml.SafeLoader itself still follows YAML 1.1
    f = tmp_path / "c.yaml"
    f.write_text("optimizer:\n  <<: {lr: 0.5, eps: 1e-6}\n  lr: 0.2\n")  # a merge key may be overridden
    cfg = load_config(f)
    assert cfg.optimizer.lr == 0.2 and cfg.optimizer.eps == 1e-6


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")
    f = tmp_path / "latin.yaml"
    f.write_bytes(b"seed: 1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="latin.yaml: not UTF-8"):
        load_config(f)


def test_directory_and_unreadable_file(tmp_path, monkeypatch):
    d = tmp_path / "configs"
    d.mkdir()
    with pytest.raises(ConfigError) as exc:
        load_config(d)
    assert str(exc.value) == f"{d}: is a directory, not a config file (give a YAML file such as configs/default.yaml)"
    f = tmp_path / "c.yaml"
    f.write_text("seed: 1\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)  # chmod 000 does not stop root
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert str(exc.value) == f"{f}: cannot be read (permission denied); make it readable or give another file"


def test_cli_bad_config_exit_2_no_traceback(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  d_model: 24\n  n_heads: 16\n")
    p = subprocess.run([sys.executable, "-m", "site_build.cli", "trace", "--config", str(f), "--out",
                        str(tmp_path / "t.json")], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2
    assert p.stderr.strip() == f"{f}: model.n_heads: 16 does not divide d_model 24"
    assert "Traceback" not in p.stderr and not (tmp_path / "t.json").exists()


def test_nan_in_training_run_names_record_and_step(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optimizer:\n  name: sgd\n  lr: 1.0e+6\ntrain_steps: 50\n")
    p = subprocess.run([sys.executable, "-m", "site_build.cli", "trace", "--config", str(f), "--out",
                        str(tmp_path / "t.json")], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert "a NaN or Inf first appeared in record '" in p.stderr and "at step " in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["seed", "model", "data", "optimizer", "train_steps", "extra"]),
                       st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none(),
                                 st.lists(st.integers(), max_size=2),
                                 st.dictionaries(st.sampled_from(["d_model", "lr", "texts", "name", "zz"]),
                                                 st.one_of(st.integers(-2, 2), st.text(max_size=2)), max_size=2)),
                       max_size=3))
def test_any_input_is_a_config_or_a_clean_error(raw):
    text = yaml.safe_dump(raw)
    try:
        config_from_dict(yaml.safe_load(text) or {}, "c.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("c.yaml: ") and "\n" not in str(exc)


@pytest.mark.parametrize("text,expected", [
    ("model:\n  tie_embeddings: no_thanks\n", "c.yaml: model.tie_embeddings: must be true or false, got a string"),
    ("model:\n  tie_embeddings: 0\n", "c.yaml: model.tie_embeddings: must be true or false, got int 0"),
    ("model:\n  tie_embeddings: null\n", "c.yaml: model.tie_embeddings: must be true or false, got nothing"),
])
def test_tie_embeddings_is_a_boolean(tmp_path, text, expected):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert "\n" not in str(exc.value) and expected in str(exc.value), str(exc.value)


def test_tie_embeddings_defaults_to_true_and_is_written_only_when_false():
    assert Config().model.tie_embeddings is True
    assert "tie_embeddings" not in Config().to_dict()["model"]  # the default config's dict (and trace) as before
    untied = config_from_dict({"model": {"tie_embeddings": False}}, "x")
    assert untied.model.tie_embeddings is False and untied.to_dict()["model"]["tie_embeddings"] is False
    assert config_from_dict({"model": {"tie_embeddings": True}}, "x") == Config()


def test_llama_defaults_and_its_keys_in_the_traces_config():
    cfg = config_from_dict({"model": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2}}, "x")
    m = cfg.model
    assert (m.arch, m.n_kv_heads, m.kv_heads, m.rope_theta, m.norm_eps, m.tie_embeddings) == \
        ("llama", 2, 2, 10000.0, 1e-6, False)
    assert config_from_dict({"model": {"arch": "llama"}}, "x").model.kv_heads == 2  # n_kv_heads defaults to n_heads
    d = cfg.to_dict()["model"]
    assert list(d)[0] == "arch" and {k: d[k] for k in ("n_kv_heads", "rope_theta", "norm_eps", "tie_embeddings")} == \
        {"n_kv_heads": 2, "rope_theta": 10000.0, "norm_eps": 1e-6, "tie_embeddings": False}
    # GPT-2's dict is as it always was: no llama key, and arch: gpt2 is the default config
    assert config_from_dict({"model": {"arch": "gpt2"}}, "x") == Config()
    assert not {"arch", "n_kv_heads", "rope_theta", "norm_eps"} & set(Config().to_dict()["model"])
    assert Config().model.kv_heads == Config().model.n_heads


@pytest.mark.parametrize("text,expected", [
    ("model:\n  arch: mistral\n", "c.yaml: model.arch: unknown architecture 'mistral' (choose one of: gpt2, llama)"),
    ("model:\n  n_kv_heads: 1\n", "c.yaml: model.n_kv_heads: is a key of model.arch: llama, which GPT-2 does not "
     "have; remove it, or set model.arch: llama"),
    ("model:\n  rope_theta: 500000\n", "c.yaml: model.rope_theta: is a key of model.arch: llama"),
    ("model:\n  norm_eps: 1e-5\n", "c.yaml: model.norm_eps: is a key of model.arch: llama"),
    ("model:\n  arch: llama\n  n_heads: 4\n  n_kv_heads: 3\n", "c.yaml: model.n_kv_heads: 3 does not divide "
     "n_heads 4: each key/value head serves the same number of query heads (choose a divisor of 4)"),
    ("model:\n  arch: llama\n  n_kv_heads: 0\n", "c.yaml: model.n_kv_heads: must be ≥ 1, got 0"),
    ("model:\n  arch: llama\n  n_kv_heads: 1.5\n", "c.yaml: model.n_kv_heads: must be an integer"),
    ("model:\n  arch: llama\n  d_model: 12\n  n_heads: 4\n", "c.yaml: model.n_heads: gives heads of d_model / "
     "n_heads = 3, an odd size; rotary position embeddings turn pairs of dimensions"),
    ("model:\n  arch: llama\n  rope_theta: 0\n", "c.yaml: model.rope_theta: must be > 0"),
    ("model:\n  arch: llama\n  rope_theta: .inf\n", "c.yaml: model.rope_theta: must be finite"),
    ("model:\n  arch: llama\n  rope_theta: 1" + "0" * 400 + "\n",  # float() of it overflowed: a traceback
     "c.yaml: model.rope_theta: must be finite, got an integer of 401 digits, beyond the largest float"),
    ("model:\n  arch: llama\n  norm_eps: -1e-6\n", "c.yaml: model.norm_eps: must be > 0"),
    ("model:\n  arch: llama\n  norm_eps: tiny\n", "c.yaml: model.norm_eps: must be a number, got a string 'tiny'"),
])
def test_llama_keys_give_one_clear_line(tmp_path, text, expected):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert "\n" not in str(exc.value) and str(exc.value).startswith(str(f) + ": ") and expected.split(": ", 1)[1] in \
        str(exc.value), str(exc.value)


def test_cli_bad_llama_key_exits_2_without_a_traceback(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  arch: llama\n  n_heads: 4\n  n_kv_heads: 3\n")
    done = subprocess.run([sys.executable, "-m", "site_build.cli", "trace", "--config", str(f), "--out",
                           str(tmp_path / "t.json")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"{f}: " + ("model.n_kv_heads: 3 does not divide n_heads 4: each key/value head "
                                              "serves the same number of query heads (choose a divisor of 4)")


def test_configs_llama_yaml_is_the_llama_run_the_docs_list():
    """configs/llama.yaml: the cat text, d_model 16, four query heads sharing two K/V heads, the default optimizer
    block; engine/docs.py lists the records of the same config."""
    from engine.docs import LLAMA

    cfg = load_config(ROOT / "configs/llama.yaml")
    assert cfg == config_from_dict(LLAMA, "x")
    assert cfg.optimizer == Config().optimizer and cfg.data == Config().data and cfg.seed == Config().seed
    assert (cfg.model.arch, cfg.model.d_model, cfg.model.n_heads, cfg.model.n_kv_heads) == ("llama", 16, 4, 2)


def test_make_verify_names_the_oracle_of_each_architecture(tmp_path):
    """tests/engine/verify_hf.py (`make verify`) on configs/default.yaml and configs/llama.yaml."""
    import json

    for config, oracle in (("default", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")):
        out = tmp_path / f"{config}.json"
        done = subprocess.run([sys.executable, "tests/engine/verify_hf.py", "--config", f"configs/{config}.yaml",
                               "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        data = json.loads(out.read_text())
        assert f" {oracle} + torch " in data["oracle"] and max(data["max_abs_diff"].values()) < 1e-9
        assert done.stdout.startswith("wrote ") and done.stdout.split(": ")[0] == f"wrote {os.path.relpath(out, ROOT)}"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["arch", "n_kv_heads", "rope_theta", "norm_eps", "n_heads", "d_model",
                                        "tie_embeddings"]),
                       st.one_of(st.sampled_from(["gpt2", "llama", "gpt3"]), st.integers(-2, 8),
                                 st.floats(allow_nan=True), st.booleans(), st.none()), max_size=5))
def test_any_llama_model_section_is_a_config_or_a_clean_error(model):
    try:
        cfg = config_from_dict({"model": model}, "c.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("c.yaml: model.") and "\n" not in str(exc)
    else:
        m = cfg.model
        assert m.n_heads % m.kv_heads == 0 and m.d_model % m.n_heads == 0
        if m.arch == "llama":
            assert (m.d_model // m.n_heads) % 2 == 0 and m.rope_theta > 0 and m.norm_eps > 0
