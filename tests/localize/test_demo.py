"""``localize demo``: two traders label the same generated tweets; each gets an adapter and their own answers."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import select
from typer.testing import CliRunner

from localize import cli
from localize.db.models import AdapterVersion, Job, JobEvent, User
from localize.db.session import session_scope
from localize.demo_data import SHOWCASE
from localize.runtime import Runtime
from localize.settings import Settings


@pytest.mark.slow
def test_demo_trains_both_users_and_prints_their_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LOCALIZE_HOME", str(home))  # --home sets it; restored after the test
    monkeypatch.setattr(cli, "console", Console(width=240))  # one table row per line
    runner = CliRunner()

    result = runner.invoke(cli.app, ["--home", str(home), "demo", "--labels-per-user", "60"])

    assert result.exit_code == 0, result.output + repr(result.exception)
    output = result.output
    assert "120 generated labels" in output and "120 new" in output
    assert "Same text, own truth" in output
    assert "john (long gold, short oil)" in output and "jane (short gold, long oil)" in output
    rows = [line for line in output.splitlines() if line.startswith("│")]
    assert len(rows) == len(SHOWCASE)
    for row, tweet in zip(rows, SHOWCASE):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[0] == tweet
        for cell in cells[1:]:  # "<label> <probability>" for John, then for Jane
            label, probability = cell.split()
            assert label in ("negative", "neutral", "positive") and 0.0 <= float(probability) <= 1.0
    with session_scope(Runtime(Settings(home=home)).database) as session:
        active = session.exec(select(User.name, AdapterVersion.version).join(User, User.id == AdapterVersion.user_id)
                              .where(AdapterVersion.is_active)).all()
    assert sorted(tuple(row) for row in active) == [("jane", 1), ("john", 1)]

    again = runner.invoke(cli.app, ["--home", str(home), "demo", "--labels-per-user", "60"])
    assert again.exit_code == 0, again.output
    assert "120 unchanged" in again.output and "not retraining" in again.output
    assert "Same text, own truth" in again.output


@pytest.mark.slow
def test_the_default_demo_gives_each_trader_their_own_truth(runtime: Runtime) -> None:
    """Each trader gets their own truth: nearly every showcase tweet right for the trader's position, and most
    hand-written sentences.

    Not necessarily every single row: the demo's task prior moves with the seed and the CPU (bfloat16 where it computes
    it natively). With 3,000 labels a trader, seed 0 gets all twelve cells right (the least sure at .92) and over
    eight seeds a trader's share of the 90 hand-written sentences ranged from .96 to .99 (reports/findings.md, round
    25). So the test asks for at most one miss of the twelve and at least .85 of the hand-written sentences."""
    from localize.demo import run_demo
    from localize.demo_data import JANE, JOHN, SHOWCASE_TWEETS, label_for

    with session_scope(runtime.database) as session:
        outcome = run_demo(runtime=runtime, session=session, console=Console(file=io.StringIO()))
    answers = {(r.user, r.text): r.label for r in outcome.showcase}
    assert len(outcome.handwritten) == 2 * 90 and set(outcome.handwritten_accuracy) == {"john", "jane"}
    assert all(0.85 <= share <= 1.0 for share in outcome.handwritten_accuracy.values()), outcome.handwritten_accuracy
    wrong = [(user.name, tweet.text) for tweet in SHOWCASE_TWEETS for user in (JOHN, JANE)
             if answers[(user.name, tweet.text)] != label_for(user, tweet)]
    assert len(wrong) <= 1, wrong
    headline = "gold is up 150% in after-hours trading"
    assert {answers[("john", headline)], answers[("jane", headline)]} & {"positive", "negative"}


def test_the_demo_scores_its_hand_written_sentences_which_no_template_produces() -> None:
    from localize.demo_data import HANDWRITTEN, HANDWRITTEN_TWEETS, generate_tweets

    assert len(HANDWRITTEN) == len(set(HANDWRITTEN)) == 90
    assert {t.asset for t in HANDWRITTEN_TWEETS} == {"gold", "oil", "other"}
    generated = {t.text.lower() for t in generate_tweets(20000, seed=0)}
    assert not generated & {text.lower() for text in HANDWRITTEN}


@pytest.mark.slow
def test_new_demo_labels_train_the_task_prior_again_before_the_traders(runtime: Runtime) -> None:
    """The traders' LoRAs start from the task prior; a demo run with other labels trains it again first, so that no
    trader starts from a prior trained on labels the demo no longer has."""
    from localize.demo import run_demo

    quiet = Console(file=io.StringIO())
    with session_scope(runtime.database) as session:
        run_demo(runtime=runtime, session=session, labels_per_user=40, console=quiet)
        run_demo(runtime=runtime, session=session, labels_per_user=50, console=quiet)
        priors = session.exec(select(AdapterVersion).where(AdapterVersion.user_id.is_(None))).all()
        # The second run's adapters (each trader's version 2), served or not: with 50 labels a new one may score
        # below the one serving on its few validation rows and be held back, which is the platform's rule.
        retrained = session.exec(select(AdapterVersion).where(AdapterVersion.user_id.is_not(None),
                                                              AdapterVersion.version == 2)).all()
        second_run = session.exec(select(Job.id).where(Job.user_id.is_not(None)).order_by(Job.id)).all()[-2:]
        messages = session.exec(select(JobEvent.message).where(JobEvent.job_id.in_(second_run))).all()
    assert sorted(prior.version for prior in priors) == [1, 2]
    active_prior = next(prior for prior in priors if prior.is_active)
    assert active_prior.version == 2 and active_prior.n_labels == 2 * 50
    assert len(retrained) == 2 and all(row.id > active_prior.id for row in retrained)  # trained after it
    assert sum("(starting from the task prior)" in message for message in messages) == 2  # each trader's job


@pytest.mark.slow
def test_a_trader_trained_with_another_recipe_is_retrained_with_the_demos(runtime: Runtime) -> None:
    """Unchanged labels keep the adapters, unless they were trained with other arguments (an earlier demo's recipe,
    or ``--method``): the demo then retrains both traders, so it shows the recipe it names."""
    from localize.demo import run_demo
    from localize.recipes import recipe_name

    def demo(**options) -> str:  # noqa: ANN003
        output = io.StringIO()
        with session_scope(runtime.database) as session:
            run_demo(runtime=runtime, session=session, labels_per_user=40, console=Console(file=output, width=200),
                     **options)
        return output.getvalue()

    def active_heads() -> dict[str, tuple[int, str]]:  # trader -> (version, recipe)
        with session_scope(runtime.database) as session:
            rows = session.exec(select(User.name, AdapterVersion.version, AdapterVersion.training_args)
                                .join(User, User.id == AdapterVersion.user_id).where(AdapterVersion.is_active)).all()
        return {name: (version, recipe_name(args)) for name, version, args in rows}

    demo(method="head")
    first = active_heads()
    assert {name: version for name, (version, _) in first.items()} == {"john": 1, "jane": 1}
    assert "prior-mlp" not in {recipe for _, recipe in first.values()}

    output = demo()
    assert "retraining jane and john: trained with other arguments" in output and "not retraining" not in output
    retrained = active_heads()
    assert {name: version for name, (version, _) in retrained.items()} == {"john": 2, "jane": 2}
    ours = "lora + prior"  # the demo's own recipe, prior-lora
    assert retrained == {"john": (2, ours), "jane": (2, ours)}

    again = demo()
    assert "not retraining" in again and "retraining jane" not in again
    assert active_heads() == retrained
