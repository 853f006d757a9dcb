"""The trainers' NLU editing layer (voice_gateway/training/nlu_files.py), on temporary copies of nlu_data/."""

from __future__ import annotations

import difflib
import shutil
import subprocess
from pathlib import Path

import pytest

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.training.nlu_files import AnnotationRefused, Entity, NluFiles, commit, normalise

# a file in another layout than ours: comments everywhere, quoted names, |- and |+ blocks, 4-space sequences
HAND_WRITTEN = """\
# Card intents, edited by hand
version: "3.1"   # the format
nlu:
  # losing it
  - intent: card_loss_report   # the most common call
    examples: |
      - 我的社保卡丢了，要挂失
      - 社保卡被偷了
    # (more below)

  - intent: 'card_progress'
    examples: |-
      - 卡办到哪了
      - 我的卡[北京](city)办好了吗
  - intent: "card_activation"
    examples: |+
      - 新卡怎么激活

  # the end
"""


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def added_lines(before: bytes, after: bytes) -> list[str]:
    """The lines `after` adds to `before`; fails if it changes or removes any."""
    a, b = before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True)
    ops = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    assert all(op[0] == "insert" for op in ops), ops
    return [line for op in ops for line in b[op[3] : op[4]]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "nlu_data", tmp_path / "nlu_data")
    shutil.copy2(PROJECT_ROOT / "dialogue" / "domain.yml", tmp_path / "domain.yml")
    return tmp_path


@pytest.fixture
def nlu(project: Path) -> NluFiles:
    return NluFiles(project / "nlu_data", project / "domain.yml")


def test_intents_are_the_domains_with_their_files_and_counts(nlu: NluFiles, project: Path) -> None:
    summaries = {s.name: s for s in nlu.intents()}
    assert list(summaries)[:2] == ["greet", "goodbye"]
    assert summaries["card_loss_report"].files == (project / "nlu_data" / "nlu" / "card.yml",)
    assert summaries["greet"].files == (project / "nlu_data" / "nlu" / "control.yml",)
    assert summaries["card_loss_report"].examples == len(nlu.examples("card_loss_report")) >= 30
    assert "社保卡挂失" in nlu.examples("card_loss_report")
    with pytest.raises(AnnotationRefused, match="没有这个意图"):
        nlu.examples("card_lost")


def test_normalise_drops_markup_spaces_punctuation_and_width() -> None:
    assert normalise("我在[北京](city)，社保卡 丢了！") == "我在北京社保卡丢了"
    assert normalise('[幺二三]{"entity": "digits", "value": "123"}。') == "幺二三"
    assert normalise("ＡＢＣ１２３？OK.") == "abc123ok"
    assert normalise(" ，。！? ") == ""


def test_find_matches_the_normalised_sentence(nlu: NluFiles) -> None:
    assert nlu.find("社保卡挂失！") == [("card_loss_report", "社保卡挂失")]
    assert nlu.find(" 社保卡，挂失。") == [("card_loss_report", "社保卡挂失")]
    assert nlu.find("这句话谁也没说过") == []
    assert nlu.find("。。") == []


def test_add_example_adds_exactly_one_line_in_the_intents_block(nlu: NluFiles, project: Path) -> None:
    card = project / "nlu_data" / "nlu" / "card.yml"
    before, others = card.read_bytes(), snapshot(project)
    last = nlu.examples("card_loss_report")[-1]
    assert nlu.add_example("card_loss_report", "俺那张社保卡找不着了，给挂失一下") == card
    after = card.read_bytes()
    assert added_lines(before, after) == ["    - 俺那张社保卡找不着了，给挂失一下\n"]
    lines = after.decode().splitlines()
    assert lines[lines.index(f"    - {last}") + 1] == "    - 俺那张社保卡找不着了，给挂失一下"
    assert nlu.examples("card_loss_report")[-1] == "俺那张社保卡找不着了，给挂失一下"
    changed = {name for name, data in snapshot(project).items() if others[name] != data}
    assert changed == {"nlu_data/nlu/card.yml"}


def test_comments_quoting_and_block_styles_are_kept_byte_for_byte(nlu: NluFiles, project: Path) -> None:
    card = project / "nlu_data" / "nlu" / "card.yml"
    card.write_text(HAND_WRITTEN, encoding="utf-8")
    for intent, text in [("card_loss_report", "卡丢了"), ("card_progress", "卡到了没"), ("card_activation", "咋激活")]:
        before = card.read_bytes()
        nlu.add_example(intent, text)
        assert added_lines(before, card.read_bytes()) == [f"      - {text}\n"], intent
    assert card.read_text(encoding="utf-8") == (
        HAND_WRITTEN.replace("      - 社保卡被偷了\n", "      - 社保卡被偷了\n      - 卡丢了\n")
        .replace("办好了吗\n", "办好了吗\n      - 卡到了没\n")
        .replace("      - 新卡怎么激活\n", "      - 新卡怎么激活\n      - 咋激活\n")
    )


def test_crlf_line_ends_are_kept(nlu: NluFiles, project: Path) -> None:
    card = project / "nlu_data" / "nlu" / "card.yml"
    card.write_bytes(card.read_bytes().replace(b"\n", b"\r\n"))
    before = card.read_bytes()
    nlu.add_example("card_progress", "卡到了没有啊喂")
    assert added_lines(before, card.read_bytes()) == ["    - 卡到了没有啊喂\r\n"]


def test_a_file_the_round_trip_would_change_elsewhere_is_not_written(nlu: NluFiles, project: Path) -> None:
    card = project / "nlu_data" / "nlu" / "card.yml"
    card.write_text(
        HAND_WRITTEN.replace("  - intent: card_loss_report", "  - metadata: null\n    intent: card_loss_report")
    )
    before = snapshot(project)
    with pytest.raises(RuntimeError, match="改动别的内容"):
        nlu.add_example("card_loss_report", "卡丢了")  # ruamel writes `metadata: null` as `metadata:`
    assert snapshot(project) == before


def test_entities_are_written_in_rasa_markup(nlu: NluFiles, project: Path) -> None:
    card = project / "nlu_data" / "nlu" / "card.yml"
    before = card.read_bytes()
    nlu.add_example(
        "card_progress",
        "  我在北京办的卡幺号能好吗",  # leading spaces are dropped, the offsets still count them
        [Entity(4, 6, "city"), Entity(9, 10, "digits", "1"), Entity(8, 9, "digits", "卡")],
    )
    assert added_lines(before, card.read_bytes()) == [
        '    - 我在[北京](city)办的[卡](digits)[幺]{"entity": "digits", "value": "1"}号能好吗\n'
    ]
    assert nlu.find("我在北京办的卡幺号能好吗")[0][0] == "card_progress"


@pytest.mark.parametrize(
    ("intent", "text", "entities", "message"),
    [
        ("card_lost", "我社保卡丢了咋整", (), "没有这个意图：card_lost"),
        ("card_loss_report", "", (), "例句不能为空"),
        ("card_loss_report", " ，。！ ", (), "例句不能为空"),
        ("card_loss_report", "挂" * 201, (), "太长"),
        ("card_loss_report", "社保卡 挂失！", (), "这句话已经是「card_loss_report」的训练例句"),
        ("card_progress", "社保卡挂失", (), "这句话已经归在「card_loss_report」下，不能再归到「card_progress」"),
        ("card_progress", "我的卡[到了]吗", (), "方括号"),
        ("card_progress", "我的卡\n到了吗", (), "换行"),
        ("card_progress", "北京的卡到了吗", (Entity(0, 9, "city"),), "实体位置不对"),
        ("card_progress", "北京的卡到了吗", (Entity(-1, 2, "city"),), "实体位置不对"),
        ("card_progress", "北京的卡到了吗", (Entity(1, 1, "city"),), "实体位置不对"),
        ("card_progress", "北京的卡到了吗", (Entity(0, 2, "city"), Entity(1, 3, "city")), "实体位置不对"),
        ("card_progress", "北京的卡到了吗", (Entity(0, 2, "town"),), "没有这个实体：town"),
    ],
)
def test_refusals_say_why_and_write_nothing(
    nlu: NluFiles, project: Path, intent: str, text: str, entities: tuple[Entity, ...], message: str
) -> None:
    before = snapshot(project)
    with pytest.raises(AnnotationRefused, match=message) as refused:
        nlu.add_example(intent, text, entities)
    assert refused.value.message == str(refused.value)
    assert isinstance(refused.value, ValueError)
    assert snapshot(project) == before


def test_an_intent_without_examples_goes_to_its_service_domains_file(nlu: NluFiles, project: Path) -> None:
    domain = project / "domain.yml"
    domain.write_text(
        domain.read_text(encoding="utf-8").replace("  - electronic_card\n", "  - electronic_card\n  - card_replace\n"),
        encoding="utf-8",
    )
    card = project / "nlu_data" / "nlu" / "card.yml"
    before = card.read_bytes()
    assert nlu.add_example("card_replace", "社保卡坏了要换一张") == card
    middle = card.read_bytes()
    assert middle.startswith(before)
    assert added_lines(before, middle) == ["- intent: card_replace\n", "  examples: |\n", "    - 社保卡坏了要换一张\n"]
    nlu.add_example("card_replace", "卡芯片坏了能换吗")
    assert added_lines(middle, card.read_bytes()) == ["    - 卡芯片坏了能换吗\n"]
    assert {s.name: s.examples for s in nlu.intents()}["card_replace"] == 2


def test_an_intent_whose_group_has_no_file_is_refused(nlu: NluFiles, project: Path) -> None:
    domain = project / "domain.yml"
    domain.write_text(
        domain.read_text(encoding="utf-8").replace("\nentities:", "  # 新业务\n  - pension_new\n\nentities:", 1),
        encoding="utf-8",
    )
    before = snapshot(project)
    with pytest.raises(AnnotationRefused, match="不知道「pension_new」该写进哪个文件"):
        nlu.add_example("pension_new", "新业务怎么办")
    assert snapshot(project) == before


# --- commit ---
def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree holding a copy of nlu_data/, isolated from the machine's git configuration."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "nlu_data", root / "nlu_data")
    shutil.copy2(PROJECT_ROOT / "dialogue" / "domain.yml", root / "domain.yml")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "-c", "user.name=setup", "-c", "user.email=setup@example.org", "commit", "-q", "-m", "initial")
    return root


def test_commit_records_just_those_paths_as_the_trainer(repo: Path) -> None:
    nlu = NluFiles(repo / "nlu_data", repo / "domain.yml")
    path = nlu.add_example("card_loss_report", "社保卡丢在地铁上了")
    other = repo / "nlu_data" / "nlu" / "talent.yml"
    other.write_text(other.read_text(encoding="utf-8") + "# someone else's edit\n", encoding="utf-8")
    git(repo, "add", str(other))  # staged by someone else: not part of the trainer's commit

    sha = commit(repo, [path], "card_loss_report: 社保卡丢在地铁上了", "wangli")
    assert sha == git(repo, "rev-parse", "HEAD") and len(sha) == 40
    trainer = "wangli <wangli@trainers.hotline.local>"
    assert git(repo, "show", "-s", "--format=%an <%ae>|%cn <%ce>|%s", sha) == (
        f"{trainer}|{trainer}|card_loss_report: 社保卡丢在地铁上了"
    )
    assert git(repo, "show", "--name-only", "--format=", sha) == "nlu_data/nlu/card.yml"
    assert git(repo, "diff", "--cached", "--name-only") == "nlu_data/nlu/talent.yml"


def test_commit_takes_the_committer_from_the_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_COMMITTER_NAME", "hotline console")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "console@hotline.local")
    path = NluFiles(repo / "nlu_data", repo / "domain.yml").add_example("greet", "喂喂，您好呀同志")
    sha = commit(repo, [path.relative_to(repo)], "greet", "zhao")
    assert git(repo, "show", "-s", "--format=%an|%cn <%ce>", sha) == "zhao|hotline console <console@hotline.local>"


def test_commit_failures_are_clear(repo: Path, tmp_path: Path) -> None:
    card = repo / "nlu_data" / "nlu" / "card.yml"
    with pytest.raises(RuntimeError, match="提交失败"):
        commit(repo, [card], "nothing changed", "wangli")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RuntimeError, match="不是 git 仓库"):
        commit(plain, [plain / "x.yml"], "m", "wangli")
    with pytest.raises(RuntimeError, match="不在仓库里"):
        commit(repo, [tmp_path / "outside.yml"], "m", "wangli")
    with pytest.raises(RuntimeError, match="提交人"):
        commit(repo, [card], "m", "evil <x@y>")
