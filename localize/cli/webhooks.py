"""``localize webhooks ...``: subscribe URLs to a task's events and read their delivery logs.

Deliveries are sent by the webhook sender of a running ``localize serve``; these commands only change and read
the subscriptions and the log."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from localize.cli.common import JsonOpt, find_task, out, print_json, print_table, services, split_list
from localize.cli.root import app

webhooks_app = typer.Typer(help="Webhooks: a task's events POSTed, signed, to a URL.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def webhooks_add(
    task: str,
    url: str,
    secret: Annotated[Optional[str], typer.Option(
        help="Shared secret (16-256 characters) the receiver checks signatures with; default: a new random one, "
        "printed once.")] = None,
    events: Annotated[Optional[str], typer.Option(
        help="Comma-separated events: job.succeeded, job.failed, adapter.activated, labels.uploaded (default: "
        "all).")] = None,
) -> None:
    """Subscribe URL to TASK's events."""
    import secrets

    from localize.services import webhooks as webhook_service

    chosen = secret or "whsec_" + secrets.token_urlsafe(32)
    with services() as (_, session):
        webhook = webhook_service.create_webhook(session=session, task=find_task(session, task), url=url,
                                                 secret=chosen, events=split_list(events))
        out().print(f"webhook {webhook.id}: {', '.join(webhook.events)} of task {task!r} -> {webhook.url}",
                    highlight=False)
    if secret is None:
        out().print(f"secret (shown once): {chosen}", highlight=False)


@webhooks_app.command("list")
def webhooks_list(task: str, as_json: JsonOpt = False) -> None:
    """List TASK's webhooks."""
    from localize.services import webhooks as webhook_service

    with services() as (_, session):
        task_row = find_task(session, task)
        rows = [webhook_service.webhook_public(row, task_row).model_dump(mode="json")
                for row in webhook_service.list_webhooks(session=session, task=task_row)]
    if as_json:
        print_json(rows)
        return
    print_table(["id", "url", "events", "created"],
                [[str(r["id"]), r["url"], ", ".join(r["events"]), r["created_at"][:19]] for r in rows])


@webhooks_app.command("remove")
def webhooks_remove(task: str, webhook_id: int) -> None:
    """Remove a webhook and its delivery log."""
    from localize.services import webhooks as webhook_service

    with services() as (_, session):
        webhook_service.delete_webhook(session=session, task=find_task(session, task), webhook_id=webhook_id)
        out().print(f"removed webhook {webhook_id} of task {task!r}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    task: str,
    webhook_id: int,
    state: Annotated[Optional[str], typer.Option(help="Only pending, delivered or failed deliveries.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest deliveries shown.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """A webhook's delivery log, newest first."""
    from localize.services import webhooks as webhook_service

    if state not in (None, "pending", "delivered", "failed"):
        raise typer.BadParameter(f"state {state!r} is not one of pending, delivered, failed", param_hint="--state")
    with services() as (_, session):
        webhook = webhook_service.get_webhook(session=session, task=find_task(session, task), webhook_id=webhook_id)
        rows, count = webhook_service.list_deliveries(session=session, webhook=webhook, state=state, limit=limit)
        data = [webhook_service.delivery_public(row).model_dump(mode="json") for row in rows]
    if as_json:
        print_json(data)
        return
    print_table(["id", "event", "state", "attempts", "last answer", "created"],
                [[str(r["id"]), r["event"], r["state"], str(r["attempts"]),
                  r["last_error"] or (str(r["last_status"]) if r["last_status"] else "-"), r["created_at"][:19]]
                 for r in data])
    out().print(f"{count} delivery(ies)")


@webhooks_app.command("redeliver")
def webhooks_redeliver(task: str, webhook_id: int, delivery_id: int) -> None:
    """Send a failed (or delivered) delivery again, with a fresh series of attempts."""
    from localize.services import webhooks as webhook_service

    with services() as (_, session):
        webhook = webhook_service.get_webhook(session=session, task=find_task(session, task), webhook_id=webhook_id)
        webhook_service.redeliver(session=session, webhook=webhook, delivery_id=delivery_id)
        out().print(f"delivery {delivery_id} is pending again; a running `localize serve` sends it")
