"""The pure parts of the throughput-and-cost bench (devstack/bench_throughput.py): /proc/<pid>/stat, the
apiserver's request counters, the background estimate and the targets. No figure is timed here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from activities.jenkins.jenkinsfile import parse_plan
from devstack.bench_throughput import (
    TARGETS,
    Estimate,
    ProcStat,
    RequestKey,
    ThroughputError,
    attribute_product_events,
    by_target,
    cpu_delta,
    direct_jenkinsfile,
    parse_proc_stat,
    parse_request_totals,
    product_events,
    read_proc_stats,
    split_writes,
    tree_ticks,
    write_deltas,
)

# A real line's shape: the comm holds a space and a parenthesis, which a naive split would miscount.
STAT_LINE = (
    "4242 (python -m (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 "
    "150 30 7 2 20 0 5 0 987654 123456789 2000 18446744073709551615 0 0 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0"
)

METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, ...
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="devops.cubepaas.io",resource="pipelineexecutions",scope="resource",subresource="",verb="POST",version="v1alpha1"} 636
apiserver_request_total{code="200",component="apiserver",dry_run="",group="devops.cubepaas.io",resource="pipelineexecutions",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 669
apiserver_request_total{code="409",component="apiserver",dry_run="",group="devops.cubepaas.io",resource="pipelines",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="devops.cubepaas.io",resource="pipelineexecutions",scope="namespace",subresource="",verb="LIST",version="v1alpha1"} 241
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 10
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="serviceaccounts",scope="resource",subresource="token",verb="POST",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 1.5e+02
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="daemonsets",scope="namespace",subresource="",verb="DELETECOLLECTION",version="v1"} 4
apiserver_request_count_total{code="200",verb="POST"} 99
"""  # noqa: E501 (lines as the apiserver writes them)


def key(verb: str, resource: str, subresource: str = "", group: str = "", code: str = "200") -> RequestKey:
    return RequestKey(verb=verb, resource=resource, subresource=subresource, group=group, code=code)


def test_a_proc_stat_line_is_read_from_the_last_parenthesis_of_its_command_name() -> None:
    st = parse_proc_stat(STAT_LINE)
    assert st == ProcStat(pid=4242, ppid=1, utime=150, stime=30, cutime=7, cstime=2, start_time=987654)
    assert st.own_ticks == 180
    assert st.ticks == 189


def test_a_line_that_is_not_a_proc_stat_line_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_proc_stat("no parenthesis here")


def test_the_current_process_is_found_in_proc_with_its_parent() -> None:
    stats = read_proc_stats()
    assert stats[os.getpid()].ppid == os.getppid()


def test_a_process_tree_counts_each_live_descendant_once_and_skips_strangers() -> None:
    def st(pid: int, ppid: int, ticks: int) -> ProcStat:
        return ProcStat(pid=pid, ppid=ppid, utime=ticks, stime=0, cutime=0, cstime=0, start_time=1)

    stats = {1: st(1, 0, 1000), 10: st(10, 1, 5), 11: st(11, 10, 7), 12: st(12, 11, 11), 20: st(20, 1, 100)}
    assert tree_ticks(10, stats) == 23
    assert tree_ticks(99, stats) == 0


def test_a_waited_for_shell_child_shows_in_its_parents_children_times(tmp_path: Path) -> None:
    # The shape of jenkins-lite's steps: a /bin/sh child that is waited for keeps its CPU counted.
    script = tmp_path / "burn.py"
    script.write_text(
        "import subprocess\n"
        "from pathlib import Path\n"
        "from devstack.bench_throughput import parse_proc_stat\n"
        "subprocess.run(['/bin/sh', '-c', 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'], check=True)\n"
        "st = parse_proc_stat(Path('/proc/self/stat').read_text())\n"
        "print(st.cutime + st.cstime, st.ticks - st.own_ticks)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    children, extra = (int(x) for x in done.stdout.split())
    assert children > 0
    assert extra == children


def test_a_process_restarted_in_a_window_counts_its_new_life_whole_and_is_marked_a_lower_bound() -> None:
    assert cpu_delta((10, 500, 100), (10, 500, 160)) == (60, None)
    ticks, note = cpu_delta((10, 500, 100), (11, 900, 40))
    assert ticks == 40 and note is not None and "lower bound" in note
    ticks, note = cpu_delta(None, (11, 900, 40))
    assert ticks == 40 and note is not None and "counted whole" in note
    ticks, note = cpu_delta((10, 500, 100), None)
    assert ticks == 0 and note is not None and "lower bound" in note


def test_the_apiserver_request_counters_are_read_by_label_set_and_others_are_ignored() -> None:
    totals = parse_request_totals(METRICS)
    assert totals[key("POST", "pipelineexecutions", group="devops.cubepaas.io", code="201")] == 636
    assert totals[key("PUT", "leases", group="coordination.k8s.io")] == 150
    assert len(totals) == 8  # apiserver_request_count_total is another metric


def test_writes_are_the_write_verbs_between_two_scrapes_with_every_answer_code() -> None:
    before = parse_request_totals(METRICS)
    after = dict(before)
    post = key("POST", "pipelineexecutions", group="devops.cubepaas.io", code="201")
    conflict = key("PATCH", "pipelines", "status", group="devops.cubepaas.io", code="409")
    listing = key("LIST", "pipelineexecutions", group="devops.cubepaas.io")
    after[post] += 2
    after[conflict] += 1
    after[listing] += 50
    after[key("DELETE", "pods")] = 1  # a label set first seen after the first scrape
    writes = write_deltas(before, after)
    assert writes == Counter({post: 2, conflict: 1, key("DELETE", "pods"): 1})


def test_a_counter_that_went_down_means_the_apiserver_restarted_and_is_refused() -> None:
    before = parse_request_totals(METRICS)
    after = {k: 0.0 for k in before}
    with pytest.raises(ThroughputError, match="restarted"):
        write_deltas(before, after)


def test_writes_split_into_the_products_the_agent_pods_and_clusters_and_the_rest() -> None:
    writes = Counter(
        {
            key("POST", "pipelineexecutions", group="devops.cubepaas.io"): 1,
            key("PATCH", "pipelineexecutions", "status", group="devops.cubepaas.io"): 3,
            key("PATCH", "rolebindings", group="rbac.authorization.k8s.io"): 1,
            key("POST", "pods"): 1,
            key("POST", "pods", "binding"): 1,
            key("POST", "serviceaccounts", "token"): 1,
            key("PUT", "leases", group="coordination.k8s.io"): 2,
            key("POST", "serviceaccounts"): 1,
            key("DELETECOLLECTION", "daemonsets", group="apps"): 1,
        }
    )
    product, cluster, other = split_writes(writes)
    assert by_target(product) == Counter(
        {"POST pipelineexecutions": 1, "PATCH pipelineexecutions/status": 3, "PATCH rolebindings": 1,
         "POST serviceaccounts": 1}
    )  # fmt: skip
    assert by_target(cluster) == Counter(
        {"POST pods": 1, "POST pods/binding": 1, "POST serviceaccounts/token": 1, "PUT leases": 2}
    )
    assert by_target(other) == Counter({"DELETECOLLECTION daemonsets": 1})


def product_event(run: str, count: int = 1, component: str = "cubepaas-devops") -> dict[str, object]:
    return {"source": {"component": component}, "involvedObject": {"name": run}, "count": count}


def test_the_products_events_are_those_of_its_source_on_the_given_runs_whatever_their_count() -> None:
    events = [
        product_event("run-1"),
        product_event("run-1", count=2),
        product_event("run-2"),
        product_event("someone-elses-run"),
        product_event("run-1", component="default-scheduler"),
    ]
    assert product_events(events, {"run-1", "run-2"}) == 3


def test_the_products_event_posts_and_every_event_patch_move_to_the_products_bucket() -> None:
    writes = Counter(
        {
            key("POST", "events", code="201"): 5,
            key("POST", "events", code="409"): 1,
            key("PATCH", "events", code="200"): 2,
        }
    )
    product, cluster, _ = split_writes(attribute_product_events(writes, posts=4))
    assert by_target(product) == Counter(
        {"POST events (the product's, on its runs)": 4, "PATCH events (the product's, on its runs)": 2}
    )
    assert by_target(cluster) == Counter({"POST events": 2})


def test_more_product_events_than_the_apiserver_created_is_refused() -> None:
    writes = Counter({key("POST", "events", code="201"): 1})
    with pytest.raises(ThroughputError, match="2 of the product's Events found"):
        attribute_product_events(writes, posts=2)


def test_a_steady_background_is_subtracted_and_judged_on_the_net_figure() -> None:
    est = Estimate(raw=9.0, before=2.0, after=2.2, tolerance=0.25)
    assert est.steady
    assert est.net == pytest.approx(6.9)
    assert est.verdict(TARGETS["writes"]) == "target <= 8 writes per run: met (judged on the net figure)"


def test_an_unsteady_background_is_judged_on_the_raw_upper_bound_only_when_that_meets_the_target() -> None:
    assert not Estimate(raw=7.0, before=0.0, after=5.0, tolerance=0.25).steady
    met = Estimate(raw=7.0, before=0.0, after=5.0, tolerance=0.25).verdict(TARGETS["writes"])
    assert met.startswith("target <= 8 writes per run: met (judged on the raw upper bound")
    unjudged = Estimate(raw=100.0, before=55.0, after=0.5, tolerance=0.25).verdict(TARGETS["writes"])
    assert "NOT judged" in unjudged
    assert "met" not in unjudged.replace("NOT judged", "")


def test_the_targets_are_those_of_the_issue_and_throughput_must_reach_its_limit() -> None:
    assert TARGETS["throughput"].met(400) and not TARGETS["throughput"].met(399)
    assert TARGETS["cpu"].met(0.25) and not TARGETS["cpu"].met(0.26)
    assert TARGETS["history-1"].met(40) and not TARGETS["history-1"].met(41)
    assert TARGETS["history-3"].met(60) and not TARGETS["history-3"].met(61)
    assert TARGETS["overhead"].met(3.0) and not TARGETS["overhead"].met(3.1)
    assert TARGETS["writes"].met(8) and not TARGETS["writes"].met(8.1)
    assert TARGETS["throughput"].verdict(91) == "target >= 400 runs/min: NOT met"


def test_the_direct_builds_jenkinsfile_is_the_products_without_any_gate() -> None:
    text = "stages:\n- name: S1\n  steps:\n  - runScriptConfig: {image: alpine, shellScript: 'true'}\n"
    script = direct_jenkinsfile(text, "proj", "one", "file:///tmp/repo.git", "a" * 40, "proj-pipeline")
    plan = parse_plan(script)
    assert plan is not None
    assert [s["gate"] for s in plan["stages"]] == [None, None]
    assert [s["name"] for s in plan["stages"]] == ["Clone", "S1"]
    assert plan["stages"][1]["steps"][0]["script"].rstrip().endswith("true")
    assert "input(" not in script
    assert "namespace: 'proj-pipeline'" in script
