"""The C target: generated C compiles cleanly and computes the PyTorch policy, or is refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import CompilerError, ExportVerificationError, UnsupportedExportError
from pgdeploy.export import export_c
from pgdeploy.export.c.compile import STRICT_FLAGS, compile_c, find_compiler
from pgdeploy.export.c.source import c_float, c_sources, c_string
from pgdeploy.export.c.support import check_c_supported
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.runtime.sampling import inverse_cdf
from pgdeploy.spec import PolicySpec
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.policy import network_from_policy

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")
N_VERIFY = 2048  # random + on-policy observations each: 4096 compared per export


@pytest.fixture(scope="module")
def normalised_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model kind: obs normalisation, unfolded, before three Linear layers."""
    from pgdeploy.training.train import train

    folder = tmp_path_factory.mktemp("normalised")
    config = TrainConfig(seed=1, total_timesteps=3_000, normalize_obs=True, hidden_sizes=(16, 8))
    train(config, out_dir=folder)
    return folder / "model.pt"


def _export(checkpoint: Path, out: Path, **kwargs: Any) -> Any:
    return export_c(checkpoint, out, n_random=N_VERIFY, n_on_policy=N_VERIFY, **kwargs)


@needs_cc
def test_c_export_matches_pytorch_on_thousands_of_observations(
    exported_model: Path, tmp_path: Path
) -> None:
    report = _export(exported_model / "model.pt", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.c", "policy.h"]
    check = report.check
    assert check.n_observations == 2 * N_VERIFY
    assert check.passed and check.max_tolerance_ratio <= 1.0
    assert (check.greedy_mismatches, check.sampled_mismatches) == (0, 0)
    assert report.verified_builds == (
        "c99 -O0",
        "c99 -O2",
        "c11 -O0",
        "c11 -O2",
        "gnu17 -O0",
        "gnu17 -O2",
    )
    assert "-ffp-contract=off" in report.verified_flags
    assert all(b.check.passed for b in report.builds)


@needs_cc
def test_c_export_normalises_unfolded_and_deeper_networks(
    normalised_model: Path, tmp_path: Path
) -> None:
    report = _export(normalised_model, tmp_path)
    assert report.check.passed
    source = (tmp_path / "policy.c").read_text()
    assert "static const float w2[16]" in source  # 4 -> 16 -> 8 -> 2
    assert "v = (v - obs_mean[i]) / obs_std[i];" in source  # not folded into w0
    policy = load_checkpoint(normalised_model).build_policy()
    w0 = network_from_policy(policy).layers[0][0]
    assert f"static const float w0[64] = {{\n    {c_float(float(w0[0, 0]))}," in source


@needs_cc
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_generated_c_is_warning_free_c99_with_no_library_but_math(
    exported_model: Path, tmp_path: Path, opt: str
) -> None:
    _export(exported_model / "model.pt", tmp_path, verify=False)
    assert CC is not None
    compile_c(CC, [tmp_path / "policy.c"], tmp_path / "policy.o", flags=(*STRICT_FLAGS, opt, "-c"))
    source = (tmp_path / "policy.c").read_text()
    includes = [line for line in source.splitlines() if line.startswith("#include")]
    assert includes == ['#include "policy.h"', "#include <math.h>"]
    for banned in ("malloc", "printf", "static float", "double"):
        assert banned not in source
    symbols = subprocess.run(
        ["nm", "-u", str(tmp_path / "policy.o")], capture_output=True, text=True, check=False
    ).stdout.split()
    if symbols:  # nm may be missing; when present, only expf may be imported
        assert [s for s in symbols if s not in ("U",)] == ["expf"]


@needs_cc
def test_header_carries_the_models_metadata(exported_model: Path, tmp_path: Path) -> None:
    _export(exported_model / "model.pt", tmp_path, verify=False)
    program = tmp_path / "meta.c"
    program.write_text(
        '#include <stdio.h>\n#include "policy.h"\n'
        "static const float low[PGDEPLOY_OBS_DIM] = PGDEPLOY_OBS_LOW;\n"
        "int main(void) {\n"
        '    printf("%s\\n%s %d %d %s %.9g\\n", pgdeploy_metadata, PGDEPLOY_ENV_ID,\n'
        "           PGDEPLOY_OBS_DIM, PGDEPLOY_N_ACTIONS, PGDEPLOY_VERSION, (double)low[0]);\n"
        "    return 0;\n}\n"
    )
    assert CC is not None
    exe = compile_c(CC, [tmp_path / "policy.c", program], tmp_path / "meta")
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    metadata, macros = lines.splitlines()
    spec = load_checkpoint(exported_model / "model.pt").spec
    assert json.loads(metadata)["spec"]["env_id"] == spec.env_id
    assert macros.split() == [
        "CartPole-v1",
        "4",
        "2",
        json.loads(metadata)["pgdeploy_version"],
        f"{np.float32(spec.obs_low[0]):.9g}",
    ]


@needs_cc
def test_source_refuses_a_header_from_another_export(exported_model: Path, tmp_path: Path) -> None:
    _export(exported_model / "model.pt", tmp_path, verify=False)
    header = tmp_path / "policy.h"
    header.write_text(
        header.read_text().replace(
            "#define PGDEPLOY_MODEL_HASH 0x", "#define PGDEPLOY_MODEL_HASH 0x1"
        )
    )
    assert CC is not None
    with pytest.raises(CompilerError, match="come from different exports"):
        compile_c(CC, [tmp_path / "policy.c"], tmp_path / "x.o", flags=(*STRICT_FLAGS, "-c"))


@needs_cc
def test_a_wrong_weight_fails_verification_and_writes_nothing(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgdeploy.export.c import target as c_target

    def off_by_1e3(spec: PolicySpec, network: PolicyNetwork) -> Any:
        network.layers[-1][0][0, 0] += 1e-3
        return c_sources(spec, network)

    monkeypatch.setattr(c_target, "c_sources", off_by_1e3)
    with pytest.raises(
        ExportVerificationError, match=r"c \(c99 -O0\) export differs .*nothing was written"
    ):
        _export(exported_model / "model.pt", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_no_compiler_is_a_clear_error_and_writes_nothing(
    exported_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(CompilerError, match=r"no C compiler found \(tried no-such-cc\).*verify"):
        export_c(exported_model / "model.pt", tmp_path, compiler="no-such-cc")
    assert list(tmp_path.iterdir()) == []
    report = export_c(exported_model / "model.pt", tmp_path, compiler="no-such-cc", verify=False)
    assert report.check is None and report.compiler is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.c", "policy.h"]
    first = report.source.read_bytes()
    export_c(exported_model / "model.pt", tmp_path, verify=False)  # same bytes every time
    assert report.source.read_bytes() == first


def test_compiler_from_cc_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc-from-env")
    with pytest.raises(CompilerError, match="tried no-such-cc-from-env"):
        find_compiler()


def test_unknown_activations_heads_and_shapes_are_refused_by_name(exported_model: Path) -> None:
    policy = load_checkpoint(exported_model / "model.pt").build_policy()
    network = network_from_policy(policy)
    check_c_supported(policy.spec, network)  # the supported kind passes
    for change, message in [
        ({"activation": "swish"}, r"activation 'swish'.*ONNX target instead"),
        ({"head": "gumbel"}, r"head 'gumbel' has no C form"),
        ({"layers": network.layers[:1]}, "the last layer has 128 outputs"),
    ]:
        wrong = dataclasses.replace(network, **change)  # type: ignore[arg-type]
        with pytest.raises(UnsupportedExportError, match=message):
            check_c_supported(policy.spec, wrong)
        with pytest.raises(UnsupportedExportError, match=message):
            c_sources(policy.spec, wrong)


def test_spec_fields_c_does_not_know_are_refused_by_name(exported_model: Path) -> None:
    policy = load_checkpoint(exported_model / "model.pt").build_policy()

    class FutureSpec(PolicySpec):
        """A spec from a pgdeploy that describes more than this generator knows."""

        def to_dict(self) -> dict[str, Any]:
            return {**super().to_dict(), "obs_encoding": "one_hot", "future": None}

    names = ("env_id", "obs_dim", "n_actions", "obs_low", "obs_high")
    future = FutureSpec(**{k: getattr(policy.spec, k) for k in names})
    with pytest.raises(
        UnsupportedExportError, match="'obs_encoding' = 'one_hot' is not implemented in C"
    ):
        check_c_supported(future, network_from_policy(policy))


@needs_cc
@pytest.mark.parametrize(
    "env, heads, starts, n_features",
    [
        ("Pick-v0", 1, "1", 5),  # Discrete(5, start=1) obs one-hot, Discrete(5, start=1)
        ("Grid-v0", 1, "-1", 6),  # Box (2, 3) obs, Discrete(3, start=-1) actions
        ("DictGuess-v0", 1, "0", 7),  # Dict(Box(2,), Discrete(3), MultiBinary(2)) obs
        ("MultiGuess-v0", 2, "0, 0", 6),  # MultiDiscrete([2, 3]) actions
        ("TupleGuess-v0", 2, "1, 0", 9),  # Tuple(MultiDiscrete, Box) obs and actions
    ],
)
def test_every_observation_layout_and_action_space_exports_verified(
    tmp_path: Path, env: str, heads: int, starts: str, n_features: int
) -> None:
    import tests.tiny_envs  # noqa: F401  (registers the envs)
    from pgdeploy.training.train import train

    config = TrainConfig(env_id=f"tests.tiny_envs:{env}", seed=0, total_timesteps=1_000)
    train(config, out_dir=tmp_path / env)
    report = export_c(tmp_path / env / "model.pt", tmp_path / "c", n_random=1024, n_on_policy=1024)
    assert report.check is not None and report.check.passed
    header = (tmp_path / "c" / "policy.h").read_text()
    assert f"#define PGDEPLOY_N_HEADS {heads}\n" in header
    assert f"#define PGDEPLOY_HEAD_STARTS {{{starts}}}\n" in header
    assert f"#define PGDEPLOY_N_FEATURES {n_features}\n" in header
    assert ("int pgdeploy_sample(const float *obs, float uniform);" in header) == (heads == 1)


@pytest.mark.parametrize(
    "value, literal",
    [
        (0.0, "0.0f"),
        (-0.0, "-0.0f"),
        (1.0, "1.0f"),
        (0.1, "0.100000001f"),
        (3.4028234663852886e38, "3.40282347e+38f"),
        (1e-45, "1.40129846e-45f"),
    ],
)
def test_float_literals_are_exact(value: float, literal: str) -> None:
    assert c_float(value) == literal
    assert np.float32(float(literal[:-1])) == np.float32(value)


def test_non_finite_weights_are_refused() -> None:
    with pytest.raises(UnsupportedExportError, match="non-finite value"):
        c_float(float("nan"))


@needs_cc
def test_c_strings_survive_any_env_id(tmp_path: Path) -> None:
    text = 'my.mod:Weird "Env"\\?? */ é\n-v0'
    (tmp_path / "s.c").write_text(
        "#include <stdio.h>\nint main(void) { fputs(" + c_string(text) + ", stdout); return 0; }\n"
    )
    assert CC is not None
    exe = compile_c(CC, [tmp_path / "s.c"], tmp_path / "s")
    assert subprocess.run([str(exe)], capture_output=True, check=True).stdout.decode() == text


@needs_cc
def test_cli_export_target_c(exported_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["export", str(exported_model / "model.pt"), "--target", "c", "--out-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"c: {tmp_path / 'policy.h'} and {tmp_path / 'policy.c'} ")
    assert "verified on 8192 observations (4096 random, 4096 on-policy)" in result.output
    assert "action mismatches: 0 greedy, 0 sampled" in result.output


@needs_cc
@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler (c++) on PATH")
def test_header_works_from_cpp(exported_model: Path, tmp_path: Path) -> None:
    _export(exported_model / "model.pt", tmp_path, verify=False)
    assert CC is not None
    compile_c(CC, [tmp_path / "policy.c"], tmp_path / "policy.o", flags=(*STRICT_FLAGS, "-c"))
    (tmp_path / "main.cpp").write_text(
        '#include "policy.h"\n#include <cstdio>\n'
        "int main() {\n    const float obs[PGDEPLOY_OBS_DIM] = {0.0f};\n"
        '    std::printf("%d\\n", pgdeploy_sample(obs, 0.5f));\n    return 0;\n}\n'
    )
    cpp_flags = ("-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic")
    exe = compile_c(
        "c++", [tmp_path / "main.cpp", tmp_path / "policy.o"], tmp_path / "m", flags=cpp_flags
    )
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    policy = load_checkpoint(exported_model / "model.pt").build_policy()
    with torch.no_grad():
        probs = policy.probs(torch.zeros(1, 4)).numpy()
    assert int(out) == int(inverse_cdf(probs, [0.5])[0])
