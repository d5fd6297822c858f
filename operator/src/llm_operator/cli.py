"""`llmops`: validate, price, render and run LLMDeployments, with no cluster needed.

llmops validate -f deployment.yaml [-f more.yaml]    exit 0 valid, 2 invalid
llmops validate --server -f deployment.yaml         also a server-side dry-run ($KUBECONFIG)
llmops cost -f deployment.yaml [-o json]
llmops render -f deployment.yaml [--replicas N]     print the objects the operator would apply
llmops up -f deployment.yaml [--port 8000]          run its llm-server here (Ctrl-C drains)
llmops up -f deployment.yaml --replicas N --gateway  N servers behind a local llm-gateway (:8080)
llmops crd [--kind LLMTenant|LLMRoute] [--reference]   print a CRD, or the field reference
llmops bill --prometheus URL [--month 2026-11] [--namespace NS]   a month's bill per tenant
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from llm_operator import kube_yaml
from llm_operator.api.admission import admission_errors, as_served
from llm_operator.api.crd import crd_yaml
from llm_operator.api.reference import reference_markdown
from llm_operator.api.resource import LLMDeployment
from llm_operator.api.route_crd import route_crd_yaml
from llm_operator.api.tenant_crd import tenant_crd_yaml
from llm_operator.billing import BillError, bill_table, fetch_bill, month_window
from llm_operator.catalog import Catalog, default_catalog
from llm_operator.cost import budget_warnings, estimate
from llm_operator.local import LocalRunError, local_server_args, run_local, run_local_fleet
from llm_operator.render import RenderSettings, UnresolvedSpecError, desired_objects, dump_objects
from llm_operator.render.policy import add_policy_arguments, policy_check, policy_from_args
from llm_operator.resolve import resolve
from llm_operator.validation import (
    COMPANION_KINDS,
    Problem,
    validate_companion,
    validate_manifest,
)

EXIT_INVALID = 2


def _documents(paths: list[str]) -> list[tuple[str, Any]]:
    """Every document of every file, all read before a command prints anything; a file that
    cannot be read, or holds no document, is an InputFileError (one line, exit 2)."""
    docs: list[tuple[str, Any]] = []
    for path in paths:
        found = kube_yaml.read_documents(path)  # numbers as the API server reads them
        if not found:
            raise kube_yaml.InputFileError(f"no LLMDeployment in {path}")
        docs += [(f"{path}#{index}" if index else path, doc) for index, doc in found]
    return docs


def _catalog(path: str | None) -> Catalog:
    catalog = default_catalog()
    if path is None:
        return catalog
    found = kube_yaml.read_documents(path)
    if len(found) > 1:
        raise kube_yaml.InputFileError(f"{path}: a catalog is one document, not {len(found)}")
    try:
        return catalog.with_patch(found[0][1] if found else None)
    except ValueError as exc:
        raise kube_yaml.InputFileError(f"{path}: {exc}") from None


def _load(
    docs: list[tuple[str, Any]],
) -> Iterator[tuple[str, LLMDeployment | None, list[Problem]]]:
    for name, doc in docs:
        doc = as_served(doc)  # nulls dropped, 8192.0 as 8192: what the API server reads
        resource, problems = validate_manifest(doc)
        if resource is not None:
            # Drift guard: the cluster's own checks (CRD schema + CEL) must agree.
            problems = [
                Problem(e.split(":", 1)[0], e.split(":", 1)[1].strip(), "")
                for e in admission_errors(doc)
            ]
            resource = None if problems else resource
        yield name, resource, problems


def cmd_validate(args: argparse.Namespace) -> int:
    catalog, docs = _catalog(args.catalog), _documents(args.file)
    policy = RenderSettings(pod_policy=policy_from_args(args))
    invalid = 0
    for name, doc in docs:  # in file order
        if isinstance(doc, dict) and doc.get("kind") in COMPANION_KINDS:
            invalid += not _report_companion(name, doc)
        else:
            invalid += not _report_deployment(name, doc, catalog, policy)
    if args.server:
        invalid += _validate_on_server(docs)
    return EXIT_INVALID if invalid else 0


def _report_companion(name: str, doc: dict[str, Any]) -> bool:
    """An LLMRoute or LLMTenant: printed valid or with its problems; whether valid."""
    resource_name, problems = validate_companion(as_served(doc))
    print(f"{name}: valid ({doc['kind']} {resource_name})" if resource_name else f"{name}: invalid")
    for problem in problems:
        print(f"  {problem}")
    return resource_name is not None


def _report_deployment(name: str, doc: Any, catalog: Catalog, policy: RenderSettings) -> bool:
    """An LLMDeployment: printed valid (with budget warnings) or with its problems."""
    for _, resource, problems in _load([(name, doc)]):
        if resource is None:
            print(f"{name}: invalid")
            for problem in problems:
                print(f"  {problem}")
            return False
        violations = policy_check(resource, catalog, policy)
        if violations:  # the operator's boundary (render/policy.py), under these flags
            print(f"{name}: invalid")
            for violation in violations:
                print(f"  PolicyViolation: {violation}")
            return False
        print(f"{name}: valid ({resource.metadata.name})")
        for warning in budget_warnings(resource.spec, catalog):
            print(f"  warning: {warning}")
    return True


def _validate_on_server(docs: list[tuple[str, Any]]) -> int:
    """A server-side dry-run of every document; the count the API server refused (exit 2 with
    one line when no cluster answers)."""
    from llm_operator.k8s import ClusterUnreachable, dry_run_create  # only here: a cluster

    try:
        answers = dry_run_create([as_served(doc) for _, doc in docs])
    except ClusterUnreachable as exc:
        print(f"llmops validate --server: cluster unreachable: {exc}", file=sys.stderr)
        return 1
    for (name, _), refusal in zip(docs, answers, strict=True):
        print(f"{name}: API server (dry-run): " + ("admitted" if refusal is None else refusal))
    return sum(refusal is not None for refusal in answers)


def cmd_cost(args: argparse.Namespace) -> int:
    catalog = _catalog(args.catalog)
    report, table, status = [], [], 0  # printed only when every document is valid
    for name, resource, _ in _load(_documents(args.file)):
        if resource is None:
            print(f"{name}: invalid, run `llmops validate -f {name}`", file=sys.stderr)
            status = EXIT_INVALID
            continue
        spec = resource.spec
        options = estimate(spec, catalog)
        report.append({"name": resource.metadata.name, "options": [asdict(o) for o in options]})
        if args.output == "json":
            continue
        budget = spec.autoscaling.budget
        table.append(
            f"{resource.metadata.name}: replicas {spec.replicas.min}..{spec.replicas.max}, "
            f"capacity {spec.accelerator.capacity}, budget "
            + (f"${budget.max_dollars_per_hour:,.2f}/h" if budget else "none")
        )
        table.append(
            f"  {'option':<12}{'accelerator':<16}{'$/h each':>10}{'$/h at min':>12}"
            f"{'$/h at max':>12}  budget allows"
        )
        for o in options:
            allows = (
                "-"
                if o.affordable_replicas is None
                else f"{o.affordable_replicas} replicas (max {o.budget_capped_max})"
            )
            option = f"{o.count}x {o.accelerator}"
            prices = f"{o.dollars_per_replica_hour:>10,.2f}{o.at_min:>12,.2f}{o.at_max:>12,.2f}"
            table.append(f"  {o.label:<12}{option:<16}{prices}  {allows}")
        for warning in budget_warnings(spec, catalog):
            table.append(f"  warning: {warning}")
    if status:
        return status
    print(json.dumps(report, indent=2) if args.output == "json" else "\n".join(table))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Exactly the operator's desired objects, as multi-document YAML (for kubectl diff)."""
    catalog = _catalog(args.catalog)
    defaults = RenderSettings()
    settings = RenderSettings(
        image_repository=args.image_repository or defaults.image_repository,
        image_tag=args.image_tag or defaults.image_tag,
        service_monitor=args.service_monitor,
        network_policy=args.network_policy,
        pod_policy=policy_from_args(args),
    )
    documents, status = [], 0
    for name, resource, _ in _load(_documents(args.file)):
        if resource is None:
            print(f"{name}: invalid, run `llmops validate -f {name}`", file=sys.stderr)
            status = EXIT_INVALID
            continue
        fallbacks = resource.spec.accelerator.fallbacks
        if args.fallback is not None and not 0 <= args.fallback < len(fallbacks):
            print(f"{name}: has no fallback {args.fallback}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        resolution = resolve(resource.spec, catalog, args.fallback)
        for note in resolution.notes:
            print(f"{name}: note: {note}", file=sys.stderr)
        try:
            rendered = desired_objects(resource, resolution, settings, args.replicas)
            violations = policy_check(resource, catalog, settings, rendered)
            if violations:
                for violation in violations:
                    print(f"{name}: PolicyViolation: {violation}", file=sys.stderr)
                status = EXIT_INVALID
                continue
            documents += rendered
        except UnresolvedSpecError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = EXIT_INVALID
    if documents and not status:  # all or nothing: a pipe to `kubectl apply -f -` applies it
        sys.stdout.write(dump_objects(documents))
    return status


def cmd_up(args: argparse.Namespace) -> int:
    """Run the deployment's server on this machine with the operator's resolved arguments."""
    loaded = list(_load(_documents(args.file)))
    if len(loaded) != 1:
        print("llmops up: give exactly one LLMDeployment", file=sys.stderr)
        return EXIT_INVALID
    name, resource, problems = loaded[0]
    if resource is None:
        print(f"{name}: invalid", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    resolution = resolve(resource.spec, _catalog(args.catalog), None)
    if not resolution.ok:
        for unresolved in resolution.problems:
            print(f"{name}: {unresolved.reason}: {unresolved.message}", file=sys.stderr)
        return EXIT_INVALID
    ports = range(args.port, args.port + args.replicas)
    if args.replicas < 1 or (args.replicas > 1 and not args.gateway):
        print("llmops up: --replicas takes N >= 1, and N > 1 needs --gateway", file=sys.stderr)
        return EXIT_INVALID
    if args.gateway and args.gateway_port in ports:
        print(f"llmops up: --gateway-port {args.gateway_port} is a server's port", file=sys.stderr)
        return EXIT_INVALID
    try:
        fleet = [local_server_args(resolution, args.host, port) for port in ports]
    except LocalRunError as exc:
        print(f"llmops up: {exc}", file=sys.stderr)
        return 1
    if args.gateway:
        served = resource.spec.model.served_model_name
        return run_local_fleet(fleet, served, args.host, args.gateway_port, args.ready_timeout)
    return run_local(fleet[0], args.host, args.port, args.ready_timeout)


def cmd_crd(args: argparse.Namespace) -> int:
    if args.reference:
        sys.stdout.write(reference_markdown())
    else:
        generate = {"LLMTenant": tenant_crd_yaml, "LLMRoute": route_crd_yaml}.get(
            args.kind, crd_yaml
        )
        sys.stdout.write(generate())
    return 0


def cmd_bill(args: argparse.Namespace) -> int:
    """A month's chargeback per tenant, from llm-gateway's counters in Prometheus."""
    try:
        window = month_window(args.month, datetime.now(UTC))
        lines = fetch_bill(args.prometheus, window, args.namespace)
    except BillError as exc:
        print(f"llmops bill: {exc}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(bill_table(window, lines))
    return 0


def _render_options(sub: argparse.ArgumentParser) -> None:
    add = sub.add_argument
    add("--replicas", type=int, help="Deployment replicas (default: the spec's starting count)")
    add("--fallback", type=int, metavar="INDEX", help="render spec.accelerator.fallbacks[INDEX]")
    add("--image-repository", help=f"default {RenderSettings().image_repository}")
    add("--image-tag", help=f"default {RenderSettings().image_tag} (cpu: with -cpu)")
    add("--service-monitor", action="store_true", help="include the ServiceMonitor")
    add("--network-policy", action="store_true", help="include the NetworkPolicy")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="llmops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("validate", cmd_validate, "check manifests as the API server and operator would"),
        ("cost", cmd_cost, "$/h at min and max replicas, and what the budget allows"),
        ("render", cmd_render, "print the objects the operator would apply (kubectl diff)"),
        ("up", cmd_up, "run one deployment's server here, with the operator's arguments"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "-f",
            "--file",
            action="append",
            required=True,
            help="manifest file (YAML, multi-document allowed; - for stdin)",
        )
        sub.add_argument("--catalog", help="GPU catalog override YAML (as in the ConfigMap)")
        sub.set_defaults(func=func)
        if name == "cost":
            sub.add_argument("-o", "--output", choices=["table", "json"], default="table")
        if name in ("validate", "render"):
            add_policy_arguments(sub)
        if name == "validate":
            sub.add_argument(
                "--server",
                action="store_true",
                help="also a server-side dry-run in the cluster of $KUBECONFIG",
            )
        if name == "render":
            _render_options(sub)
        if name == "up":
            sub.add_argument("--host", default="127.0.0.1")
            sub.add_argument("--port", type=int, default=8000, help="the (first) server's port")
            sub.add_argument("--replicas", type=int, default=1, help="servers, on port, port+1 ...")
            sub.add_argument("--gateway", action="store_true", help="llm-gateway in front")
            sub.add_argument("--gateway-port", type=int, default=8080)
            sub.add_argument("--ready-timeout", type=float, default=300.0, help="seconds")
    crd_command = commands.add_parser("crd", help="print the generated CRD")
    crd_command.add_argument("--reference", action="store_true", help="the field reference instead")
    crd_command.add_argument(
        "--kind", choices=["LLMDeployment", "LLMTenant", "LLMRoute"], default="LLMDeployment"
    )
    crd_command.set_defaults(func=cmd_crd)
    bill = commands.add_parser("bill", help="a month's bill per tenant, from Prometheus")
    bill.add_argument("--prometheus", required=True, help="base URL, e.g. http://prometheus:9090")
    bill.add_argument("--month", help="YYYY-MM, UTC (default: this month, until now)")
    bill.add_argument("--namespace", help="only this namespace's tenants")
    bill.set_defaults(func=cmd_bill)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except kube_yaml.InputFileError as exc:  # before anything is printed: stdout stays empty
        print(f"llmops {args.command}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return result


if __name__ == "__main__":
    sys.exit(main())
