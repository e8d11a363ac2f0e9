"""ember quick start: a local cluster, tasks, objects, wait and an actor."""
import time

import ember

ember.init(num_cpus=2)
print("cluster resources:", ember.cluster_resources())


@ember.remote
def plus_1(x):
    return x + 1


@ember.remote
def square(x):
    time.sleep(0.01)
    return x * x


print("plus_1(10) =", ember.get(plus_1.remote(10)))

ref = ember.put(list(range(1000)))
print("sum of a put list, in a task:", ember.get(ember.remote(sum).remote(ref)))

refs = [square.remote(i) for i in range(20)]
ready, not_ready = ember.wait(refs, num_returns=5, timeout=10)
print(f"wait: {len(ready)} ready, {len(not_ready)} not yet")
print("squares:", ember.get(refs))

chained = plus_1.remote(plus_1.remote(plus_1.remote(0)))
print("chain of 3 dependent tasks:", ember.get(chained))



@ember.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


counter = Counter.remote()
print("actor counter:", ember.get([counter.incr.remote() for _ in range(3)]))

ember.shutdown()
print("done")
