# A JSON stdout callback for the Ansible end-to-end test. ansible-core
# alone (Debian's ansible-core, no collections) has no json callback; this
# prints the same shape as ansible.posix.json for what the test reads:
# {"plays": [{"tasks": [{"task": {"name"}, "hosts": {host: result}}]}],
#  "stats": {host: {"ok", "changed", "failures", "unreachable", "skipped"}}}
import json

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "warden_json"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def _task(self, task):
        if not self.plays:
            self.plays.append({"play": {"name": ""}, "tasks": []})
        self.plays[-1]["tasks"].append({"task": {"name": task.get_name()}, "hosts": {}})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task(task)

    def _record(self, result, **extra):
        if not self.plays or not self.plays[-1]["tasks"]:
            self._task(result._task)  # ad-hoc runs start no task
        res = dict(result._result)
        res.update(extra)
        self.plays[-1]["tasks"][-1]["hosts"][result._host.get_name()] = res

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        out = {"plays": self.plays, "stats": {h: stats.summarize(h) for h in hosts}}
        self._display.display(json.dumps(out, default=str))
