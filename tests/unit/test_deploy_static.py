"""`ccbridge render --verify --static`: the source map, template errors, the static dialplan
checks (jump targets, contexts, the CCB_* contract, reachability) and `ccbridge diff`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ccbridge.cli import main
from ccbridge.config import Config, load_config
from ccbridge.deploy.dialplan import parse, pattern_matches
from ccbridge.deploy.sourcemap import TemplateError, render_site_mapped
from ccbridge.deploy.static import check_dialplan
from ccbridge.render import render_site

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "s3cret-ami")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "tok")


@pytest.fixture
def config() -> Config:
    return load_config(LAB)


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A copy of dialplans/ a test may break."""
    d = tmp_path / "dialplans"
    shutil.copytree(REPO / "dialplans", d)
    return d


def edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` (once) in a template; return the 1-based line it is on."""
    text = path.read_text()
    assert text.count(old) >= 1, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


def findings(config: Config, templates: Path | None = None, site: str = "bangalore") -> list[str]:
    s = config.site(site)
    files = render_site_mapped(config, s, templates)
    plan = parse({n: f.text for n, f in files.items()})
    return [str(f) for f in check_dialplan(plan, files, config, s)]


def test_the_mapped_render_is_the_render(config: Config) -> None:
    for site in config.sites:
        plain = render_site(config, site)
        mapped = render_site_mapped(config, site)
        assert {n: f.text for n, f in mapped.items()} == plain


def _as_pattern(template_line: str) -> str:
    """A template line as a regex: its {{ expressions }} match anything."""
    parts = re.split(r"[ \t]*\{\{.*?\}\}[ \t]*", template_line)
    return ".*".join(re.escape(p) for p in parts)


def test_each_rendered_line_points_at_its_template_line(config: Config) -> None:
    checked = 0
    for site in config.sites:
        for name, f in render_site_mapped(config, site).items():
            template = (REPO / "dialplans" / f"{name}.j2").read_text().split("\n")
            for i, line in enumerate(f.text.split("\n"), 1):
                origin = f.origin(i)
                if not line.strip() or origin is None:
                    continue
                assert origin.template == f"{name}.j2"
                src = template[origin.line - 1]
                if "{%" in src or "{#" in src:
                    continue
                assert re.fullmatch(_as_pattern(src), line), (name, i, line, origin, src)
                checked += 1
    assert checked > 500


def test_the_lab_passes_the_static_checks(config: Config) -> None:
    for site in config.sites:
        assert findings(config, site=site.name) == []


def test_an_undefined_variable_names_the_template_line_and_the_variable(
    config: Config, templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = edit(
        templates / "queues.conf.j2",
        "timeout={{ q.settings.timeout }}",
        "timeout={{ q.settings.tmeout }}",
    )
    with pytest.raises(TemplateError) as err:
        render_site_mapped(config, config.site("bangalore"), templates)
    assert (err.value.template, err.value.line) == ("queues.conf.j2", line)
    code = main(["render", str(LAB), "--static", "--templates", str(templates)])
    out = capsys.readouterr()
    assert code == 2
    assert f"queues.conf.j2:{line}:" in out.err and "tmeout" in out.err
    assert "Traceback" not in out.err + out.out


def test_a_bad_filter_names_the_template_line(
    templates: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = edit(
        templates / "extensions.conf.j2",
        "CCB_THIS_SITE={{ site.name }}",
        "CCB_THIS_SITE={{ site.name | shout }}",
    )
    code = main(["render", str(LAB), "--out", str(tmp_path / "out"), "--templates", str(templates)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"extensions.conf.j2:{line}:" in err and "shout" in err
    assert not (tmp_path / "out").exists()


def test_a_goto_to_a_missing_context_points_at_its_template_line(
    config: Config, templates: Path
) -> None:
    line = edit(
        templates / "extensions.conf.j2",
        "Goto(ccb-queue-exit,${QUEUESTATUS},1)",
        "Goto(ccb-queue-exits,${QUEUESTATUS},1)",
    )
    found = findings(config, templates)
    assert any(
        f.startswith(f"extensions.conf.j2:{line}: error:") and "no context 'ccb-queue-exits'" in f
        for f in found
    ), found


def test_a_goto_to_a_missing_label_is_found(config: Config, templates: Path) -> None:
    line = edit(templates / "extensions.conf.j2", "?failover)", "?failovr)")
    found = findings(config, templates)
    assert any(f"extensions.conf.j2:{line}:" in f and "no label 'failovr'" in f for f in found), (
        found
    )


def test_an_endpoint_context_that_does_not_exist(config: Config, templates: Path) -> None:
    line = edit(templates / "pjsip.conf.j2", "context=ccb-from-site", "context=ccb-from-sites")
    found = findings(config, templates)
    assert any(
        f"pjsip.conf.j2:{line}:" in f and "'ccb-from-sites' does not exist" in f for f in found
    ), found


def test_a_number_no_context_answers(config: Config, templates: Path) -> None:
    # ccb-inbound's catch-all for numbers the site does not know (its call ID, then route)
    catch_all = (
        "exten => _[+0-9].,1,Set(__{{ v.CALLID }}={{ new_callid }})\n"
        " same => n,Goto(ccb-route,${EXTEN},1)\n"
    )
    edit(templates / "extensions.conf.j2", catch_all, "")
    edit(
        templates / "extensions.conf.j2",
        "{% for n in numbers %}",
        "{% for n in numbers if n.did != '+918000000002' %}",
    )
    found = findings(config, templates)
    assert any("number +918000000002: no extension for it" in f for f in found), found


def test_a_variable_outside_the_contract(config: Config, templates: Path) -> None:
    """The contract check of the render test, generalised into the command."""
    line = edit(
        templates / "extensions.conf.j2",
        "MSet(__{{ v.DID }}=${EXTEN},",
        "MSet(__CCB_DIDD=${EXTEN},",
    )
    found = findings(config, templates)
    assert any(
        f"extensions.conf.j2:{line}:" in f and "CCB_DIDD is not in the dialplan contract" in f
        for f in found
    ), found


def test_an_unreachable_extension_needs_a_reason(config: Config, templates: Path) -> None:
    path = templates / "extensions.conf.j2"
    text = path.read_text()
    path.write_text(text + "\n[ccb-orphan]\nexten => s,1,Hangup()\n")
    line = text.count("\n") + 2
    found = findings(config, templates)
    assert any(
        f"extensions.conf.j2:{line}:" in f and "context ccb-orphan: no inbound call reaches it" in f
        for f in found
    ), found
    edit(path, "[ccb-orphan]\n", "[ccb-orphan]\n; entry: a test says something enters it\n")
    assert findings(config, templates) == []


def test_asterisk_patterns() -> None:
    assert pattern_matches("_[+0-9].", "+918000000001")
    assert pattern_matches("_X.", "123") and not pattern_matches("_X.", "1")
    assert pattern_matches("_[A-Z].", "TIMEOUT") and not pattern_matches("_X.", "TIMEOUT")
    assert pattern_matches("_NXX", "212") and not pattern_matches("_NXX", "112")


def test_diff_against_an_earlier_render(
    templates: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tmp_path / "before"
    assert main(["render", str(LAB), "--out", str(before), "--templates", str(templates)]) == 0
    capsys.readouterr()
    assert main(["diff", str(LAB), "--against", str(before), "--templates", str(templates)]) == 0
    assert "dhaka: no changes" in capsys.readouterr().out
    edit(templates / "queues.conf.j2", "ringinuse=no", "ringinuse=no\nannounce-holdtime=no")
    assert (
        main(
            [
                "diff",
                str(LAB),
                "--against",
                str(before),
                "--site",
                "dhaka",
                "--templates",
                str(templates),
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "--- dhaka/queues.conf" in out and "+++ dhaka/queues.conf (new render)" in out
    assert "\n+announce-holdtime=no\n" in out and "bangalore" not in out


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("{% for q in queues %}", "{% for q in queues %}{% if q %}", "unknown tag 'endfor'"),
        ("[{{ q.name }}]", "[{{ q.name }]", "unexpected '}'"),
        (
            "timeout={{ q.settings.timeout }}",
            "timeout={{ q.settings.timeout // 0 }}",
            "ZeroDivisionError",
        ),
        (
            "timeout={{ q.settings.timeout }}",
            "timeout={{ q.settings.timeout | int(base=) }}",
            "unexpected ')'",
        ),
    ],
)
def test_garbage_templates_are_reported_not_raised(
    templates: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, said: str
) -> None:
    edit(templates / "queues.conf.j2", old, new)
    code = main(["render", str(LAB), "--static", "--templates", str(templates)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: queues.conf.j2:") and said in err, err
    assert "Traceback" not in err


def test_a_template_that_is_not_text_is_reported(
    templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (templates / "rtp.conf.j2").write_bytes(b"[general]\nrtpstart=\xff\xfe{{ site.rtp_start }}\n")
    assert main(["render", str(LAB), "--static", "--templates", str(templates)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: rtp.conf.j2") and "UnicodeDecodeError" in err, err


def test_diff_against_a_folder_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", str(LAB), "--against", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


# `dialplan show ccb-held` as Asterisk 22.10 printed it for the lab's bangalore (cut).
DIALPLAN_SHOW = """\
[ Context 'ccb-held' created by 'pbx_config' ]
  '+918000000001' => 1. Set(LOCAL(lang)=hi)                        [extensions.conf:89]
                    2. Goto(held,1)                               [extensions.conf:90]
  'held' =>         1. GotoIf($[${EPOCH} - 0${FILTER(0-9,${DB(ccbridge/hb)})} > ${ARG1}]?none) [extensions.conf:100]
                    4. Goto(read)                                 [extensions.conf:104]
     [caller]       5. Set(LOCAL(d)=${CALLERID(num)})             [extensions.conf:105]

-= 2 extensions (5 priorities) in 1 context. =-
"""  # noqa: E501


def test_the_live_dialplan_is_read_priority_by_priority() -> None:
    from ccbridge.deploy.loaded import parse_dialplan_priorities, parse_dialplan_show

    shown = parse_dialplan_priorities(DIALPLAN_SHOW)
    assert shown["ccb-held"]["+918000000001"] == {1: "Set(LOCAL(lang)=hi)", 2: "Goto(held,1)"}
    assert shown["ccb-held"]["held"][5] == "Set(LOCAL(d)=${CALLERID(num)})"
    assert shown["ccb-held"]["held"][1].endswith("> ${ARG1}]?none)")
    assert parse_dialplan_show(DIALPLAN_SHOW) == {"ccb-held": {"+918000000001", "held"}}


def test_caller_id_variants_are_extensions_of_their_own() -> None:
    from ccbridge.deploy.loaded import parse_dialplan_priorities

    plan = parse(
        {
            "extensions.conf": "[r]\nexten => _X./_+880.,1,NoOp(bn)\n same => n,Hangup()\n"
            "exten => _X.,1,NoOp(any)\n"
        }
    )
    assert sorted(plan.contexts["r"].extensions) == ["_X.", "_X./_+880."]
    assert [p.args for p in plan.contexts["r"].extensions["_X./_+880."].priorities] == ["bn", ""]
    shown = parse_dialplan_priorities(
        "[ Context 'r' created by 'pbx_config' ]\n"
        "  '_X.' (CID match '_+880.') => 1. NoOp(bn)        [extensions.conf:2]\n"
        "                    2. Hangup()                   [extensions.conf:3]\n"
        "  '_X.' =>          1. NoOp(any)                  [extensions.conf:4]\n"
    )
    assert shown["r"] == {"_X./_+880.": {1: "NoOp(bn)", 2: "Hangup()"}, "_X.": {1: "NoOp(any)"}}
