"""The `crowsnest` console script: operator input → core calls. Logging is configured here only."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.app import build, deliver_now, web_app
from bot.checks.hygiene import run_image_checks
from bot.config import ConfigError, Settings, intake_problems, load_settings, open_intakes
from bot.findings.recheck import recheck_images
from bot.images.facts import ImageRef
from bot.images.inventory import packages_of
from bot.images.registry_client import RegistryClient, RegistryError
from bot.images.sbom import cyclonedx_json
from bot.infra.clock import SystemClock
from bot.intake.pipeline import policy_from
from bot.model.findings import Finding, Severity, worst_first
from bot.store import inbox
from bot.store.db import Database, migrate
from bot.vulns import store as advisories
from bot.vulns.osv import LoadError, load_path
from bot.vulns.reports import ReportError, detect_and_parse
from bot.vulns.reports import to_finding as report_finding
from bot.vulns.service import Vulnerabilities

log = logging.getLogger("crowsnest")

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors parse without a pattern."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config_path(arg: str | None) -> Path | None:
    value = arg or os.environ.get("CROWSNEST_CONFIG")
    return Path(value) if value else None


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(_config_path(args.config))


def cmd_serve(args: argparse.Namespace) -> int:
    import handlers

    settings = _settings(args)
    if problems := intake_problems(settings):
        raise ConfigError([*problems, "serve: refusing to start with unauthenticated intake"])
    for endpoint in open_intakes(settings):
        log.warning(
            "%s accepts unauthenticated requests: anyone who reaches it can file events",
            endpoint,
        )
    runtime = build(settings, handlers.EDGES)
    log.info(
        "serving on %s:%d (database %s, slack %s)",
        settings.server.host,
        settings.server.port,
        settings.database.url.split("://", 1)[0],
        settings.slack.effective_mode.value,
    )
    web.run_app(
        web_app(runtime),
        host=settings.server.host,
        port=settings.server.port,
        ssl_context=_tls(settings),
        print=None,
        access_log=None,
        shutdown_timeout=5,
        loop=_event_loop(),
    )
    return EXIT_OK


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed: the intake's per-request cost is mostly the event loop's
    (futures, transports, wake-ups), and uvloop's are several times cheaper."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop not installed: serving on asyncio's own event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _tls(settings: Settings) -> ssl.SSLContext | None:
    """Kubernetes calls admission webhooks over HTTPS only: serve TLS when a cert is set.

    With `client_ca` the handshake asks for a client certificate and rejects one that CA did
    not sign, but lets a client without one through (`CERT_OPTIONAL`): probes, Slack and the
    registries share this listener, and the admission endpoint itself refuses a caller that
    presented none.
    """
    cert, key = settings.admission.tls_cert, settings.admission.tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if settings.admission.client_ca is not None:
        context.load_verify_locations(cafile=settings.admission.client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    migrate(settings.database.url)
    print("database is at the latest revision")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    path = _config_path(args.config)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line)
        return EXIT_ERROR
    if problems := intake_problems(settings):
        for line in problems:
            print(line)
        return EXIT_ERROR
    for endpoint in open_intakes(settings):
        print(f"warning: {endpoint} accepts unauthenticated requests")
    print(
        f"{path or 'defaults'}: ok ({len(settings.registries)} registries, "
        f"{len(settings.teams)} teams, slack {settings.slack.effective_mode.value})"
    )
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_events(settings, args))


async def _events(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.database)
    try:
        if args.requeue is not None:
            async with db.transaction() as s:
                n = await inbox.requeue_failed(s, datetime.now(UTC), args.requeue)
            print(f"requeued {n} failed events")
            return EXIT_OK
        async with db.transaction() as s:
            if args.failed:
                for row in await inbox.failed(s, args.limit):
                    print(
                        f"{row.id}\t{row.source}\t{row.event_type}\t{row.dedup_key}\t"
                        f"attempts={row.attempts}\t{row.last_error}"
                    )
            else:
                for status, n in sorted((await inbox.counts(s)).items()):
                    print(f"{status}\t{n}")
    finally:
        await db.dispose()
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.from_report:
        return _report(args)
    if not args.image:
        print("error: give IMAGE_REF or --from-report FILE", file=sys.stderr)
        return EXIT_ERROR
    try:
        ref = ImageRef.parse(args.image)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    registry = next((r for r in settings.registries if r.host == ref.host), None)
    if registry is None:
        print(f"error: no configured registry serves {ref.host}", file=sys.stderr)
        return EXIT_ERROR
    return asyncio.run(_scan(settings, registry, ref, args))


def _report(args: argparse.Namespace) -> int:
    try:
        found = detect_and_parse(Path(args.from_report).read_bytes())
    except (OSError, ReportError) as exc:
        print(f"error: {args.from_report}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return _print_findings(args, args.from_report, None, [], [report_finding(r) for r in found])


async def _scan(settings: Settings, registry: Any, ref: ImageRef, args: argparse.Namespace) -> int:
    client = RegistryClient(scan_layers=settings.checks.scan_layers, limits=settings.scan)
    if sys.stderr.isatty():
        client.progress = lambda line: print(f"\r{line:70}", end="", file=sys.stderr, flush=True)
    db = Database(settings.database)
    await client.open()
    try:
        facts = await client.image_facts(registry, ref.repository, ref.reference, ref.tag)
        packages = packages_of(facts)
        findings = run_image_checks(facts, policy_from(settings), datetime.now(UTC))
        try:
            findings += await Vulnerabilities(db).findings(packages)
        except Exception as exc:  # no database here: the image checks still stand
            print(f"warning: advisories not checked: {type(exc).__name__}", file=sys.stderr)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await client.close()
        await db.dispose()
    if client.progress is not None:
        print(file=sys.stderr)
    if args.sbom:
        sbom = cyclonedx_json(args.image, facts.digest, packages)
        await asyncio.to_thread(Path(args.sbom).write_text, sbom, encoding="utf-8")
    platforms = [p.platform for p in facts.platforms]
    return _print_findings(args, args.image, facts.digest, platforms, worst_first(findings))


def _print_findings(
    args: argparse.Namespace,
    subject: str,
    digest: str | None,
    platforms: list[str],
    findings: list[Finding],
) -> int:
    if args.format == "json":
        out = {
            "image": subject,
            "digest": digest,
            "platforms": platforms,
            "findings": [
                {
                    "id": f.check_id,
                    "severity": f.severity.value,
                    "title": f.title,
                    "package": f.package,
                    "fixed_version": f.fixed_version,
                    "detail": f.detail,
                    "remediation": f.remediation,
                }
                for f in findings
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        head = f"{subject} {digest or ''}".strip()
        print(head + (f" ({', '.join(platforms)})" if platforms else ""))
        for f in findings:
            package = f"  {f.package}" if f.package else ""
            fixed = f" -> {f.fixed_version}" if f.fixed_version else ""
            print(f"  {f.severity.value.upper():8} {f.check_id:24} {f.title}{package}{fixed}")
        if not findings:
            print("  no findings")
    fail_at = Severity(args.fail_on)
    return EXIT_FINDINGS if any(f.severity.rank >= fail_at.rank for f in findings) else EXIT_OK


def cmd_vulndb(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_vulndb_import(settings, Path(args.path)))


async def _vulndb_import(settings: Settings, path: Path) -> int:
    errors: list[LoadError] = []
    db = Database(settings.database)
    try:
        async with db.transaction() as s:
            result = await advisories.import_records(s, load_path(path, errors))
        rechecked = await recheck_images(settings, db)
    except (OSError, ValueError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await db.dispose()
    for error in errors[:20]:
        print(f"skipped {error.path}: {error.error}", file=sys.stderr)
    print(
        f"imported {path}: {result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.withdrawn_removed} withdrawn; "
        f"{len(errors)} files skipped; {rechecked} new findings in known images"
    )
    return EXIT_OK


def cmd_digest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.team and settings.team(args.team) is None:
        print(f"error: no team named {args.team!r}", file=sys.stderr)
        return EXIT_ERROR
    return asyncio.run(_digest(settings, args))


async def _digest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.digest.jobs import ORG, DigestJobs, Due
    from bot.digest.render import digest_message, digest_text

    db = Database(settings.database)
    now = datetime.now(UTC)
    try:
        jobs = DigestJobs(settings, db, SystemClock())
        digest = await jobs.build((args.team,) if args.team else None, now)
        if args.chart:
            from bot.digest.chart import chart_png

            png = chart_png(digest, args.team)
            await asyncio.to_thread(Path(args.chart).write_bytes, png)
        if args.dry_run:
            if args.format == "json":
                print(json.dumps({"blocks": digest_message(digest, args.team).blocks}, indent=2))
            else:
                print(digest_text(digest))
            return EXIT_OK
        team = settings.team(args.team)
        channel = (
            team.channel
            if team
            else (settings.digest.managers_channel or settings.slack.fallback_channel)
        )
        due = Due(args.team or ORG, now, channel, team.timezone if team else "UTC")
        await jobs.post(due, f"digest:{due.team}:manual:{now.isoformat()}", digest, now)
    finally:
        await db.dispose()
    await deliver_now(settings)
    print(f"digest posted to {channel}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crowsnest", description="Crow's Nest security bot")
    p.add_argument("--log-level", default=os.environ.get("CROWSNEST_LOG_LEVEL", "info"))
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--config", help="config file (default $CROWSNEST_CONFIG, ./crowsnest.toml)"
        )
        return sp

    add("serve", "web server, workers and Slack delivery").set_defaults(func=cmd_serve)
    add("migrate", "apply database migrations").set_defaults(func=cmd_migrate)
    add("check-config", "validate the configuration").set_defaults(func=cmd_check_config)
    ev = add("events", "inbox counts, or the failed events")
    ev.add_argument("--failed", action="store_true", help="list events parked as failed")
    ev.add_argument("--requeue", type=int, nargs="*", metavar="ID", help="retry failed events")
    ev.add_argument("--limit", type=int, default=100)
    ev.set_defaults(func=cmd_events)
    sc = add("scan", "check an image in a configured registry now")
    sc.add_argument("image", nargs="?", help="host[:port]/repository:tag or …@sha256:…")
    sc.add_argument("--sbom", metavar="PATH", help="also write a CycloneDX JSON SBOM there")
    sc.add_argument("--from-report", metavar="FILE", help="read a Trivy or Grype JSON report")
    sc.add_argument("--format", choices=("text", "json"), default="text")
    sc.add_argument("--fail-on", choices=[s.value for s in Severity], default="high")
    sc.set_defaults(func=cmd_scan)
    dg = add("digest", "build the patch-lag digest now and post it")
    dg.add_argument("--team")
    dg.add_argument("--dry-run", action="store_true", help="print it instead of posting")
    dg.add_argument("--format", choices=("text", "json"), default="text")
    dg.add_argument("--chart", metavar="PATH", help="write the chart PNG there")
    dg.set_defaults(func=cmd_digest)
    vd = sub.add_parser("vulndb", help="the offline advisory store")
    vd_sub = vd.add_subparsers(dest="vulndb_command", required=True)
    imp = vd_sub.add_parser("import", help="load OSV advisories (a directory or all.zip)")
    imp.add_argument("path")
    imp.add_argument("--config", help="config file (default $CROWSNEST_CONFIG, ./crowsnest.toml)")
    imp.set_defaults(func=cmd_vulndb)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
