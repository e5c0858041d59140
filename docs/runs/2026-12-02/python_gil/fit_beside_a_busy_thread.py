"""fit's wall time alone and beside a busy Python thread (one that only counts), for the GIL
finding of 2026-12-02: PythonCallback::on_step_end took the GIL back after every step to check
for Ctrl-C, and each take waits for the busy thread's switch interval (5 ms).
    python fit_beside_a_busy_thread.py      # with the package under test installed"""
import threading
import time

import numpy as np

import cnnfromscratch
from cnnfromscratch import Dense, Flatten, Sequential

model = Sequential([Flatten(), Dense(16, activation='relu'), Dense(4, activation='softmax')])
model.compile(optimizer='adam', loss='scce', learning_rate=1e-2, input_shape=[1, 6, 6])
rng = np.random.default_rng(1)
x, y = rng.random((4096, 1, 6, 6), dtype=np.float32), rng.integers(0, 4, 4096)
print("package:", cnnfromscratch.__file__)
for _ in range(2):  # the first fit also plans the buffers
    t = time.perf_counter()
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    alone = time.perf_counter() - t
print(f"768 steps alone: {alone * 1e3:.1f} ms")
ticks = 0
done = threading.Event()


def count():
    global ticks
    while not done.is_set():
        ticks += 1


counter = threading.Thread(target=count)
counter.start()
before = ticks
t = time.perf_counter()
model.fit(x, y, epochs=3, batch_size=16, verbose=0)
beside = time.perf_counter() - t
during = ticks - before
done.set()
counter.join()
print(f"768 steps beside a busy thread: {beside * 1e3:.1f} ms ({beside / alone:.0f}x); the thread counted {during} meanwhile")
