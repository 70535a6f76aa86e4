"""Change 10: the whole zoo (default_config), with a monitor: drill accuracy every 100 steps of the
drill phase (and to step 1,000), greedy audit of 20 monitor problems every 500 steps."""
import json, time
from pathlib import Path
from nex_interp.zoo.train import train_zoo, default_config, greedy_eval
from nex_interp.zoo.drills import drill_accuracy
from nex_interp.zoo.task import generate_problems
mon = generate_problems(20, 20_000, prefix="mon")
log = open("monitor.jsonl", "a")
def monitor(name, step, model):
    if name != "base":
        return
    s = step + 1
    rec = {}
    if s <= 1000 and s % 100 == 0:
        t = time.time(); rec["drill_acc"] = round(drill_accuracy(model), 4); rec["drill_seconds"] = round(time.time() - t, 1)
    if s % 500 == 0:
        t = time.time(); rec.update(greedy_eval(model, mon)); rec["eval_seconds"] = round(time.time() - t, 1)
    if rec:
        rec.update(step=s, at=time.strftime("%H:%M:%S"))
        log.write(json.dumps(rec) + "\n"); log.flush()
t0 = time.time()
train_zoo(Path("out"), default_config(), progress=True, monitor=monitor)
print("TOTAL", time.time() - t0)
