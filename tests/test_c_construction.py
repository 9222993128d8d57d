"""The C target is safe by construction: no string from a file becomes C code.

Classes, not cases:

- a family of hostile strings (comment ends, line splices, trigraphs, preprocessor lines,
  quotes, backslashes, newlines, NUL, non-ASCII, escape sequences, very long) in every
  string field a checkpoint carries: each is refused with a typed error before any file
  is written or a compiler runs (a spy compiler records any run), or, where the field has
  no grammar (a Dict key), it reaches the C only as byte values: the preprocessed C holds
  it nowhere outside string literals, and the comments are those of a bland model;
- :func:`c_string` on every byte and on every payload: only ``[A-Za-z0-9_.:/-]`` and
  three-digit octal escapes, so no trigraph and no line splice can be written, and the
  literal compiles back to the exact bytes under C99, C11 and GNU17;
- the whole generated text, for every activation, head and layout: no ``??``, no
  backslash but an octal escape's, no ``?`` but the conditional operator's;
- issue 21's two attacks: the env-id breakout that ran ``system()`` from a constructor at
  export, and the ``__STDC_VERSION__`` expf redefinition that only C11/GNU17 builds saw.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pgdeploy.errors import (
    CompilerError,
    ExportVerificationError,
    InvalidArgumentError,
    PgdeployError,
)
from pgdeploy.export import export_c
from pgdeploy.export.c import target as c_target
from pgdeploy.export.c.compile import VERIFIED_STANDARDS, compile_c
from pgdeploy.export.c.source import CSources, c_sources, c_string
from pgdeploy.runtime.network import ACTIVATIONS, HEADS, PolicyNetwork
from pgdeploy.spec import ACTION_NAME_PATTERN, PolicySpec, is_env_id
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.policy import network_from_policy
from tests.attack_files import checkpoint_dict, save_checkpoint_dict

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")

#: The breakout of issue 21: after line splicing, ``*\\`` newline ``/`` is ``*/``.
BREAKOUT = (
    "CartPole-v1 *\\\n/ __attribute__((constructor)) static void pgdeploy_pwn(void)"
    ' { extern int system(const char *); system("touch MARKER"); } /*'
)
#: The variant that changed only C11/GNU17 builds: verified under C99, wrong elsewhere.
STDC_VERSION = (
    "CartPole-v1 *\\\n/\n#if __STDC_VERSION__ > 199901L\n#define expf(x) 1.0f\n#endif\n/*"
)
HOSTILE = [
    BREAKOUT,
    STDC_VERSION,
    "*/",
    "/*",
    "//",
    "??/",
    "??=define X",
    "CartPole-v1??/\nint x;",
    "#if 1",
    "CartPole-v1\n#include <stdlib.h>",
    '"',
    "'",
    "\\",
    "CartPole-v1\\",
    "\n",
    "\r\n",
    "a\x00b",
    "\x00",
    "\u00e9",
    "\u202e-v1",
    "\ud800",
    "\x1b[31mred",
    "\\x41\\101\\n",
    "%s%n",
    "Cart Pole-v1",
    "\t",
    "a" * 5000,
    "CartPole-v1" + "\\\n" * 3,
]


def _spy_compiler(folder: Path) -> tuple[str, Path]:
    """A compiler that records each run in ``folder/RAN`` and then compiles with cc."""
    ran = folder / "RAN"
    spy = folder / "spycc"
    spy.write_text(f'#!/bin/sh\necho run >> "{ran}"\nexec "{CC}" "$@"\n')
    spy.chmod(0o755)
    return str(spy), ran


def _set_field(data: dict[str, Any], field: str, value: str) -> None:
    spec = data["spec"]
    if field == "env_id":
        spec["env_id"] = value
    elif field == "action_names":
        spec["action_names"] = ["left", value]
    elif field == "observation_space.type":
        spec["observation_space"] = {"type": value, "shape": [4]}
    elif field == "action_space.type":
        spec["action_space"] = {"type": value, "nvec": [2], "start": [0]}
    elif field == "observation_space.key":
        spec["observation_space"] = {
            "type": "dict",
            "spaces": {value: {"type": "box", "shape": [4]}},
        }
    else:  # pragma: no cover
        raise AssertionError(field)


STRING_FIELDS = [
    "env_id",
    "action_names",
    "observation_space.type",
    "action_space.type",
    "observation_space.key",
]


#: A harmless value of each field.
BLAND = {
    "env_id": "ZZbland-v0",
    "action_names": "ZZbland",
    "observation_space.type": "box",
    "action_space.type": "discrete",
    "observation_space.key": "ZZbland",
}
#: Which strings each field accepts: its grammar, or none at all for a Dict key.
GRAMMARS = {
    "env_id": is_env_id,
    "action_names": lambda s: ACTION_NAME_PATTERN.fullmatch(s) is not None,
    "observation_space.type": lambda s: False,
    "action_space.type": lambda s: False,
    "observation_space.key": lambda s: True,
}


def _outside_literals(c_text: str) -> str:
    """The C text with string and character literals removed."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', '""', c_text)


def _code_shape(preprocessed: str) -> str:
    """Preprocessed C without its literals' contents and the metadata's byte values."""
    code = _outside_literals(preprocessed)
    return re.sub(r"(pgdeploy_metadata\[\] = )\{[^}]*\}", r"\1{...}", code)


def _preprocessed(folder: Path) -> str:
    assert CC is not None
    done = subprocess.run(
        [CC, "-E", "-P", "-std=c99", f"-I{folder}", str(folder / "policy.c")],
        capture_output=True,
        check=True,
    )
    return done.stdout.decode("ascii")


def _comments(sources: CSources) -> list[str]:
    return re.findall(r"/\*.*?\*/", sources.header + sources.source, re.S)


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_hostile_strings_in_every_field_are_refused_or_only_data(
    exported_model: Path, tmp_path: Path, field: str
) -> None:
    cc, ran = _spy_compiler(tmp_path)
    bland_data = checkpoint_dict(exported_model)
    _set_field(bland_data, field, BLAND[field])
    bland = load_checkpoint(save_checkpoint_dict(bland_data, tmp_path / "bland.pt"))
    bland_sources = c_sources(bland.spec, network_from_policy(bland.build_policy()))
    bland_comments = _comments(bland_sources)
    (tmp_path / "bland").mkdir()
    for name, data in bland_sources.files().items():
        (tmp_path / "bland" / name).write_bytes(data)
    bland_code = _code_shape(_preprocessed(tmp_path / "bland"))
    accepted = 0
    for index, payload in enumerate(HOSTILE):
        data = copy.deepcopy(bland_data)
        _set_field(data, field, payload)
        path = save_checkpoint_dict(data, tmp_path / f"m{index}" / "model.pt")
        out = tmp_path / f"out{index}"
        verify = index == 0  # the breakout, verified; the rest unverified (compiling is slow)
        try:
            report = export_c(path, out, compiler=cc, verify=verify, n_random=64, n_on_policy=0)
        except PgdeployError as exc:
            assert not out.exists() or list(out.iterdir()) == [], (field, payload)
            assert not ran.exists(), f"a compiler ran for a refused {field} {payload!a}"
            assert "\n" not in str(exc) and "\x1b" not in str(exc)
            continue
        accepted += 1  # it matched the field's grammar, or the field has none
        if verify:
            assert report.check is not None and report.check.passed
            ran.unlink()
        files = {p.name: p.read_bytes() for p in out.iterdir()}
        assert sorted(files) == ["policy.c", "policy.h"]
        text = (files["policy.h"] + files["policy.c"]).decode("ascii")
        sources = CSources(files["policy.h"].decode(), files["policy.c"].decode())
        assert _comments(sources) == bland_comments  # comments carry no file text
        # Outside its literals and the metadata's byte values, the preprocessed C is the
        # bland model's token for token: the string changed no code.
        assert _code_shape(_preprocessed(out)) == bland_code, (field, payload)
        if len(payload) > 8 and re.search(r"[^A-Za-z0-9_.:/ -]", payload):
            assert payload not in text  # (short ones such as */ occur in pgdeploy's text)
    assert accepted == sum(map(GRAMMARS[field], HOSTILE))
    assert not (Path.cwd() / "MARKER").exists()


#: Env ids that match the grammar yet read like C: still only inside the literal.
GRAMMATICAL = [
    "system",
    "mod.sub:ZZns/ZZname-v3",
    "__attribute__:ZZctor-v0",
    "a:b:c",
    "a.b:c-d/e_f.g-v12",
]


@pytest.mark.parametrize("env_id", GRAMMATICAL)
def test_env_ids_that_pass_the_grammar_are_only_inside_the_literal(
    exported_model: Path, tmp_path: Path, env_id: str
) -> None:
    policy = load_checkpoint(exported_model / "model.pt").build_policy()
    spec = dataclasses.replace(policy.spec, env_id=env_id, action_names=("push left", "ZZright"))
    sources = c_sources(spec, network_from_policy(policy))
    for name, data in sources.files().items():
        (tmp_path / name).write_bytes(data)
    assert CC is not None  # and the header with both literals compiles without a warning
    for standard in VERIFIED_STANDARDS:
        flags = (standard, "-Wall", "-Wextra", "-Werror", "-pedantic", "-c")
        compile_c(CC, [tmp_path / "policy.c"], tmp_path / "p.o", flags=flags, link=False)
    assert f"static const char PGDEPLOY_ENV_ID[] = {c_string(env_id)};" in sources.header
    assert sources.header.count(c_string(env_id)) == 1
    code = _outside_literals(_preprocessed(tmp_path))
    for word in re.split(r"[:/]", env_id):
        if word.startswith("ZZ"):
            assert word not in code
    assert "ZZright" not in code and '"push\\040left"' in sources.header
    assert re.findall(r"ZZ\w+", sources.source) == []  # nothing of it in policy.c
    assert not any("ZZ" in comment for comment in _comments(sources))


def test_c_string_writes_only_safe_characters_and_octal_escapes() -> None:
    texts = [bytes([b]).decode("latin-1") for b in range(256)] + HOSTILE
    texts += ["".join(chr(c) for c in range(0, 0x250))]
    for text in texts:
        literal = c_string(text)
        assert literal[0] == literal[-1] == '"'
        inner = literal[1:-1]
        assert re.fullmatch(r"(?:[A-Za-z0-9_.:/-]|\\[0-7]{3})*", inner), ascii(text)
        assert "?" not in literal and "\n" not in literal and '"' not in inner


def test_c_string_compiles_back_to_the_exact_bytes_under_every_standard(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "MARKER"
    payloads = [*HOSTILE, BREAKOUT.replace("MARKER", str(marker))]
    strings = ",\n".join(f"    {c_string(p)}" for p in payloads)
    (tmp_path / "s.c").write_text(
        "#include <stdio.h>\n#include <string.h>\n"
        f"static const char *const s[] = {{\n{strings}\n}};\n"
        "int main(void) {\n    size_t i;\n"
        "    for (i = 0; i < sizeof s / sizeof s[0]; ++i) {\n"
        "        fwrite(s[i], 1, strlen(s[i]), stdout);\n        putchar(0);\n    }\n"
        "    return 0;\n}\n"
    )
    assert CC is not None
    for standard in VERIFIED_STANDARDS:
        flags = (standard, "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wno-overlength-strings")
        exe = compile_c(CC, [tmp_path / "s.c"], tmp_path / "s", flags=flags)
        out = subprocess.run([str(exe)], capture_output=True, check=True).stdout
        expected = [p.encode("utf-8", "surrogatepass").split(b"\x00")[0] for p in payloads]
        assert out.split(b"\x00")[:-1] == expected, standard
    assert not marker.exists()


def _spec(layout: bool, heads: tuple[int, ...]) -> PolicySpec:
    space = {
        "type": "tuple",
        "spaces": [{"type": "box", "shape": [2]}, {"type": "discrete", "n": 3}],
    }
    kind = "discrete" if len(heads) == 1 else "multi_discrete"
    dim = 3 if layout else 2
    return PolicySpec(
        "Any-v0",
        dim,
        sum(heads),
        obs_low=(-1.0,) * dim,
        obs_high=(1.0,) * dim,
        observation_space=space if layout else None,
        action_space={"type": kind, "nvec": list(heads), "start": [1] * len(heads)},
    )


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_generated_text_has_no_trigraph_splice_or_stray_escape(activation: str, head: str) -> None:
    rng = np.random.default_rng(0)
    for layout, heads in [(False, (2,)), (True, (2, 3))]:
        spec = _spec(layout, heads)
        widths = [spec.obs_layout.n_features, 8, spec.n_actions]
        layers = tuple(
            (rng.normal(size=(o, i)).astype(np.float32), rng.normal(size=o).astype(np.float32))
            for i, o in itertools.pairwise(widths)
        )
        n = len(spec.obs_layout.continuous_columns)
        net = PolicyNetwork(
            clip_low=np.full(n, -1, np.float32),
            clip_high=np.full(n, 1, np.float32),
            layers=layers,
            obs_mean=np.zeros(n, np.float32),
            obs_std=np.ones(n, np.float32),
            norm_clip=5.0,
            activation=activation,
            head=head,
        )
        sources = c_sources(spec, net)
        for text in (sources.header, sources.source):
            assert text.isascii()
            assert "??" not in text and "\\\n" not in text and "\r" not in text
            assert re.findall(r"\\(?![0-7]{3})", text) == []
            assert re.findall(r"\?(?! )", text) == []  # only the conditional operator's ' ? '
            assert "#define PGDEPLOY_ENV_ID" not in text and "PGDEPLOY_METADATA" not in text


@pytest.mark.parametrize("payload", [BREAKOUT, STDC_VERSION], ids=["system", "stdc_version"])
def test_issue_21_env_id_attacks_are_refused_and_never_run(
    exported_model: Path, tmp_path: Path, payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the payload's relative MARKER would land here
    cc, ran = _spy_compiler(tmp_path)
    data = checkpoint_dict(exported_model)
    data["spec"]["env_id"] = payload
    path = save_checkpoint_dict(data, tmp_path / "evil" / "model.pt")
    with pytest.raises(PgdeployError, match="is not a gymnasium env id"):
        export_c(path, tmp_path / "out", compiler=cc, n_random=64, n_on_policy=0)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert not ran.exists() and not (tmp_path / "MARKER").exists()

    # A spec that skipped its own check (a future bug) is refused by the generator too.
    policy = load_checkpoint(exported_model / "model.pt").build_policy()
    forged = copy.copy(policy.spec)
    object.__setattr__(forged, "env_id", payload)
    with pytest.raises(InvalidArgumentError, match="is not a gymnasium env id"):
        c_sources(forged, network_from_policy(policy))


def test_a_standard_dependent_difference_fails_verification(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped bytes are verified under C11 and GNU17 too: code that changes only
    there (issue 21's expf redefinition, injected here as if the generator wrote it)
    fails export, and nothing is written."""
    real = c_target.c_sources

    def with_stdc_branch(spec: PolicySpec, network: PolicyNetwork) -> CSources:
        sources = real(spec, network)
        injected = "#if __STDC_VERSION__ > 199901L\n#define expf(x) 1.0f\n#endif\n"
        source = sources.source.replace("#include <math.h>\n", "#include <math.h>\n" + injected)
        return CSources(sources.header, source)

    monkeypatch.setattr(c_target, "c_sources", with_stdc_branch)
    with pytest.raises(ExportVerificationError, match=r"c \(c11 -O0\) export differs"):
        export_c(exported_model / "model.pt", tmp_path, n_random=256, n_on_policy=0)
    assert list(tmp_path.iterdir()) == []


def test_harness_output_is_refused_when_the_program_prints(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extra text from code that runs before main (a constructor) is never trusted."""
    real = c_target.c_sources

    def with_constructor(spec: PolicySpec, network: PolicyNetwork) -> CSources:
        sources = real(spec, network)
        ctor = (
            "extern int puts(const char *);\n"
            '__attribute__((constructor)) static void hello(void) { puts("verified"); }\n'
        )
        return CSources(sources.header, sources.source + ctor)

    monkeypatch.setattr(c_target, "c_sources", with_constructor)
    with pytest.raises(CompilerError, match="printed text it never prints"):
        export_c(exported_model / "model.pt", tmp_path, n_random=64, n_on_policy=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "actions[h] = head_starts[h] + inverse_cdf(",
            "actions[h] = 7 + head_starts[h] + inverse_cdf(",
            "action",
        ),
        ("probs[k] = probs[k] / sum;", "probs[k] = k == 1 ? NAN : probs[k] / sum;", "NaN"),
    ],
    ids=["action_out_of_range", "nan_probability"],
)
def test_invalid_c_outputs_fail_the_runtimes_output_check(
    exported_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    old: str,
    new: str,
    message: str,
) -> None:
    """The harness's outputs pass the runtime's one check of outputs (actions in range,
    no NaN anywhere) before they are compared, in every build."""
    real = c_target.c_sources

    def broken(spec: PolicySpec, network: PolicyNetwork) -> CSources:
        sources = real(spec, network)
        assert old in sources.source
        return CSources(sources.header, sources.source.replace(old, new))

    monkeypatch.setattr(c_target, "c_sources", broken)
    with pytest.raises(ExportVerificationError, match=rf"gives invalid outputs: .*{message}"):
        export_c(exported_model / "model.pt", tmp_path, n_random=256, n_on_policy=0)
    assert list(tmp_path.iterdir()) == []
