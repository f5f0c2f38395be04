"""The live view in a real browser: Debian's chromium, driven by selenium through Debian's chromedriver, loads the
page of a live mesh (the bundled two-ISP `default` topology, route servers) and checks that every node appears,
that a link-down fault turns its link red within 2 s, that a node's panel shows its address, peers and decoded
paths, that the page's own actions inject and heal a fault and ping between two nodes, and that the page loaded
nothing from anywhere but its server (it must work offline). Screenshots go to tests/artifacts/ (gitignored; the
paths are printed)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from testbed.mesh import Mesh
from testbed.topology import load

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
RED = "rgb(220, 38, 38)"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(mesh, url) of a running mesh with its live view."""
    os.environ["PKTLAB_HOME"] = str(tmp_path_factory.mktemp("runs"))
    from testbed.ui.server import UiServer
    # the default topology's routing devices without its chain services: a mining core would slow the measured
    # fault checks the teacher's actions wait for (the chain has tests of its own)
    topo = load("default")
    for node in topo.nodes.values():
        node.roles = [r for r in node.roles if r in ("router", "route_server")]
    mesh = Mesh.up(topo, name="ui-browser")
    server = UiServer(mesh)
    try:
        yield mesh, server.start()
    finally:
        server.stop()
        mesh.down()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} missing: scripts/bootstrap.sh installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1440,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def wait_for(driver, script: str, within: float, what: str, interval: float = 0.05):
    """Poll a JavaScript expression until it is truthy; its value, or a failure naming `what`."""
    deadline = time.monotonic() + within
    while True:
        value = driver.execute_script("return " + script)
        if value:
            return value
        if time.monotonic() > deadline:
            shot(driver, "timeout")
            pytest.fail(f"{what}: not seen within {within} s")
        time.sleep(interval)


def link_id(mesh, a: str, b: str) -> int:
    return next(i for i, l in enumerate(mesh.topo.links) if {l.a, l.b} == {a, b})


def test_every_node_appears_and_a_link_down_turns_red_within_2s(live, browser):
    mesh, url = live
    browser.get(url)
    wait_for(browser, "document.querySelectorAll('#nodes g.node').length", 10, "the map")
    drawn = browser.execute_script("return [...document.querySelectorAll('#nodes g.node')].map(g => g.dataset.node)")
    assert sorted(drawn) == sorted(mesh.topo.nodes)
    assert browser.execute_script("return document.querySelectorAll('#links line.link').length") == \
        len(mesh.topo.links)
    wait_for(browser, "document.getElementById('conn').classList.contains('live')", 10, "the live stream")
    assert mesh.run.name in browser.find_element("id", "runinfo").text
    shot(browser, "map")

    i = link_id(mesh, "a2", "a4")
    line = f"document.getElementById('link-{i}')"
    assert browser.execute_script(f"return getComputedStyle({line}).stroke") != RED
    fault = mesh.fault("link-down a2--a4", check=False)
    applied = time.monotonic()
    wait_for(browser, f"{line}.dataset.state === 'down' && getComputedStyle({line}).stroke === '{RED}'", 2.0,
             "link a2--a4 red after link-down")
    print(f"link red {time.monotonic() - applied:.2f} s after the fault")
    wait_for(browser, f"document.getElementById('fault-{fault.id}')", 2.0, "the fault in the list")
    shot(browser, "link-down")
    mesh.heal(fault, check=False)
    wait_for(browser, f"{line}.dataset.state === 'up'", 10, "link a2--a4 up again after heal")

    # the page loaded nothing but its own server's files: it works offline
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(url) for u in urls), urls


def test_node_panel_and_the_teachers_actions(live, browser):
    mesh, url = live
    from selenium.webdriver.support.ui import Select
    browser.get(url)
    wait_for(browser, "document.getElementById('node-a2')", 10, "node a2")
    browser.find_element("id", "node-a2").click()
    body = wait_for(browser, "document.querySelector('#panel-body h3') && "
                             "document.getElementById('panel-body').innerText", 10, "a2's panel")
    assert mesh.ip6("a2") in body
    assert "Peers" in body and "a4" in body
    assert "a2 → a4" in body or "a2 → a3 → a4" in body        # a path, decoded hop by hop
    shot(browser, "panel")

    # inject a fault with the form, heal it with its button
    Select(browser.find_element("id", "fault-kind")).select_by_value("loss")
    browser.find_element("id", "fault-target").send_keys("a3--a4")
    browser.find_element("id", "fault-value").send_keys("20%")
    browser.find_element("id", "fault-inject").click()
    text = wait_for(browser, "!/applying/.test(document.getElementById('action-result').innerText) && "
                             "document.getElementById('action-result').innerText", 60, "the answer to the fault form")
    ok = browser.execute_script("return document.querySelector('#action-result.ok') !== null")
    assert ok and "loss a3--a4" in text, f"the loss fault was not applied: {text!r}"
    active = mesh.faults()
    assert [f.describe() for f in active] == ["loss a3--a4 20%"]
    halo = f"document.getElementById('link-{link_id(mesh, 'a3', 'a4')}').previousSibling"
    wait_for(browser, f"{halo}.getAttribute('visibility') === 'visible'", 2, "the fault's halo on a3--a4")
    shot(browser, "fault")
    browser.find_element("css selector", f"#fault-{active[0].id} button.heal").click()
    text = wait_for(browser, "!/healing/.test(document.getElementById('action-result').innerText) && "
                             "document.getElementById('action-result').innerText", 60, "the answer to the heal")
    assert "healed" in text, f"the heal failed: {text!r}"
    assert mesh.faults() == []

    # ping between two nodes from the page: the answer is shown and logged in the timeline
    Select(browser.find_element("id", "ping-a")).select_by_value("a1")
    Select(browser.find_element("id", "ping-b")).select_by_value("b2")
    browser.find_element("id", "ping-go").click()
    wait_for(browser, "/a1 → b2: rtt/.test(document.getElementById('action-result').innerText)", 20, "the ping")
    wait_for(browser, "[...document.querySelectorAll('#events li')].some(li => /a1 → b2/.test(li.innerText))", 3,
             "the ping in the timeline")
    shot(browser, "actions")


def test_guard_refuses_foreign_hosts_and_cross_origin_posts(live):
    import json
    import urllib.error
    import urllib.request
    mesh, url = live
    cases = [({"Host": "evil.example"}, None, "unexpected Host"),
             ({"Content-Type": "text/plain"}, b'{"fault": "crash a1"}', "POST JSON"),
             ({"Content-Type": "application/json", "Origin": "http://evil.example"}, b'{"fault": "crash a1"}',
              "POST JSON")]
    for headers, data, expect in cases:
        req = urllib.request.Request(url + ("api/fault" if data else "api/topology"), data=data, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 403 and expect in json.loads(e.value.read())["error"]
    req = urllib.request.Request(url + "api/fault", data=b'{"fault": "crash nosuch"}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400 and "no node 'nosuch'" in json.loads(e.value.read())["error"]
    assert mesh.faults() == []
