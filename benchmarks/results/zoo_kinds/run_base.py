import json, sys, time
from pathlib import Path
from nex_interp.zoo.train import train_zoo, default_config, greedy_eval
from nex_interp.zoo.task import generate_problems
mon = generate_problems(20, 20_000, prefix="mon")
log = open("zoo_kinds_run/monitor.jsonl", "a")
def monitor(name, step, model):
    if name == "base" and (step + 1) % 500 == 0:
        t = time.time()
        ev = greedy_eval(model, mon)
        ev.update(step=step + 1, seconds=round(time.time() - t, 1), at=time.strftime("%H:%M:%S"))
        log.write(json.dumps(ev) + "\n"); log.flush()
t0 = time.time()
train_zoo(Path("zoo_kinds_run/out"), default_config(), progress=True, monitor=monitor)
print("TOTAL", time.time() - t0)
