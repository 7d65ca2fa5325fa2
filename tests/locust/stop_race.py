"""Run by tests/locust/test_user_stop.py in a process of its own (Locust patches the process with gevent):
plays the stop race with Locust's own user and with a DispatchUser, and prints what each task saw as JSON."""

from __future__ import annotations

import json
from typing import Any

import gevent
from gevent import GreenletExit
from locust import User, constant
from locust.env import Environment

from loadgen.locust import DispatchUser


def _work(user: Any) -> None:
    """A task that stands for a call on its way, and asks for the stop as the third one ends."""
    record = type(user)
    record.started.append(len(record.started) + 1)
    number = len(record.started)
    try:
        gevent.sleep(0.02)
    except GreenletExit:
        record.cut.append(number)
        raise
    if number == 3:  # the stop comes while the user waits its 0 s, once its wake-up is queued
        gevent.spawn(user.stop, force=False)


class PlainUser(User):
    wait_time = constant(0)
    tasks = [_work]


class Dispatcher(DispatchUser):
    host = "127.0.0.1:9"
    api_key = "stop-test-key"
    wait_time = constant(0)
    tasks = [_work]


def play(user_class: Any) -> dict[str, list[int]]:
    user_class.started, user_class.cut = [], []
    user = user_class(Environment(user_classes=[user_class]))
    greenlet = user.start(gevent.pool.Group())
    greenlet.join(timeout=5)
    assert greenlet.dead, "the user did not stop"
    return {"started": user_class.started, "cut": user_class.cut}


if __name__ == "__main__":
    print(json.dumps({"locust": play(PlainUser), "loadgen": play(Dispatcher)}))
