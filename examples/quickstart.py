"""Send emails through a pulse-trio queue: the API in its shortest use.

Usage::

    python examples/quickstart.py [FOLDER]

The script creates FOLDER (default ``quickstart-out`` in the current
folder) with the queue database ``queue.db`` and a Maildir ``mail``. No
email leaves the machine: "sending" one adds a message to the Maildir,
where ``mail/new`` gets one file per message (any mail client that reads
Maildir can open it). Running the script again adds to the same queue and
Maildir.
"""

from __future__ import annotations

import logging
import mailbox
import sys
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import trio

from pulse_trio import JobConfig, JobPriority, Pulse, current_job


async def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    outbox = mailbox.Maildir(folder / "mail", create=True)

    # An async handler runs on the event loop. Adding to a Maildir is a
    # short local write, and a plain function would run in a thread.
    async def send_email(payload: dict[str, str]) -> None:
        if "@" not in payload["to"]:
            raise ValueError(f"invalid address {payload['to']!r}")
        message = EmailMessage()
        message["From"] = "queue@example.com"
        message["To"] = payload["to"]
        message["Subject"] = payload["subject"]
        message["X-Job-Id"] = current_job().id
        message.set_content(payload["body"])
        outbox.add(message)

    # One worker runs one job at a time, highest priority first.
    pulse = await Pulse.new(folder / "queue.db", workers=1)
    pulse.handle("send_email", send_email)

    # Enqueued jobs are committed to queue.db before these calls return,
    # so they survive a crash even before the queue runs.
    welcome = await pulse.enqueue(
        "send_email",
        {"to": "ada@example.com", "subject": "Welcome", "body": "Hello, Ada!"},
    )
    alert = await pulse.enqueue_with_config(
        "send_email",
        {"to": "ops@example.com", "subject": "Disk full", "body": "Act now."},
        JobConfig(priority=JobPriority.HIGH),  # runs before the welcome
    )
    reminder = await pulse.schedule(
        "send_email",
        {"to": "ada@example.com", "subject": "Reminder", "body": "Still there?"},
        delay=timedelta(seconds=1),
    )
    # no_retry(): the first failure is final and the job goes to the
    # dead-letter queue, instead of retrying with backoff.
    broken = await pulse.enqueue_with_config(
        "send_email",
        {"to": "nobody", "subject": "Lost", "body": "Never sent."},
        JobConfig.no_retry(),
    )

    async with pulse:  # runs the queue until the block ends
        for job_id in (welcome, alert, reminder, broken):
            job = await pulse.wait(job_id)
            subject = job.payload["subject"]
            print(f"{subject!r} to {job.payload['to']}: {job.status.value}")

    print(f"status of the alert: {(await pulse.status(alert)).status.value}")
    for job in await pulse.dead_jobs():
        print(f"dead job {job.id}: {job.last_error}")
    pulse.close()
    print(f"{len(outbox)} messages in {folder / 'mail'}")


if __name__ == "__main__":
    # pulse-trio logs through the logging module and configures no handler.
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    trio.run(main, Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-out"))
