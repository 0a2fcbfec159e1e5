"""A headless Chromium driven through WebDriver (selenium), for the lab
test of the web console (tests/lab/tests/console.rs).

It reads one JSON command per line on stdin and answers one JSON line on
stdout: {"ok": value} or {"error": "..."}. The Rust test decides what to
do and asserts; this only drives the browser.

  {"op": "open", "url": URL}
  {"op": "fill", "css": SELECTOR, "value": TEXT}
  {"op": "click", "css": SELECTOR}
  {"op": "js", "script": JS}          the script's return value
  {"op": "async_js", "script": JS}    calls arguments[0] with its result
  {"op": "screenshot", "path": PATH}
  {"op": "quit"}
"""

import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in [
        "--headless=new",
        # Root runs the test; Chromium's sandbox refuses root.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--user-data-dir=" + profile,
        # The lab has no DNS: h1 is the master's host.
        "--host-resolver-rules=MAP h1 10.231.0.11",
    ]:
        options.add_argument(argument)
    # The master's certificate is signed by the cluster's own CA, which
    # this throwaway profile does not know.
    options.accept_insecure_certs = True
    # Debian's chromedriver, named: selenium must not fetch one.
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main():
    driver = browser(sys.argv[1])
    driver.set_script_timeout(30)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            try:
                if op == "open":
                    driver.get(command["url"])
                    result = driver.current_url
                elif op == "fill":
                    element = driver.find_element(By.CSS_SELECTOR, command["css"])
                    element.clear()
                    element.send_keys(command["value"])
                    result = None
                elif op == "click":
                    driver.find_element(By.CSS_SELECTOR, command["css"]).click()
                    result = None
                elif op == "js":
                    result = driver.execute_script(command["script"])
                elif op == "async_js":
                    result = driver.execute_async_script(command["script"])
                elif op == "screenshot":
                    driver.save_screenshot(command["path"])
                    result = command["path"]
                elif op == "quit":
                    print(json.dumps({"ok": None}), flush=True)
                    return
                else:
                    raise ValueError("unknown op " + op)
                print(json.dumps({"ok": result}), flush=True)
            except Exception as e:  # the test reports it with the command
                print(json.dumps({"error": type(e).__name__ + ": " + str(e)}), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
