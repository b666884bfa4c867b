"""What the local run shows on the console while KFP's full log goes to a file."""

import io

from pipelines.local import TaskLog


def test_console_gets_finished_tasks_and_step_notes_only():
    echoed: list[str] = []
    log_file = io.StringIO()
    log = TaskLog(log_file, echoed.append)
    log.write("Executing task 'sweep'\nINFO some vLLM chatter\n")
    log.write("adaptive cc i128-o64: largest batch meeting the SLO = 3 (4 points; grid: 16)\n")
    log.write("  deployment cc: 4 points\nTask 'sweep' finished with status SUCCESS\npartial")
    assert echoed[0] == "       adaptive cc i128-o64: largest batch meeting the SLO = 3 (4 points; grid: 16)"
    assert echoed[1] == "       deployment cc: 4 points"
    assert echoed[2].startswith("  ok   sweep (") and len(echoed) == 3
    assert "vLLM chatter" in log_file.getvalue() and log_file.getvalue().endswith("partial")


def test_a_failed_step_shows_its_log_tail_but_the_verdict_step_only_its_verdict():
    echoed: list[str] = []
    log = TaskLog(io.StringIO(), echoed.append)
    log.write("Executing task 'sweep'\nTraceback (most recent call last):\nValueError: bad\n"
              "Task 'sweep' finished with status FAILURE\n")
    assert echoed[0].startswith("  FAIL sweep (") and "ValueError: bad" in echoed[1]
    echoed.clear()
    log.write("Executing task 'check-points'\n1 of 2 points failed: server start: boom (cc-b2)\n"
              "Task 'check-points' finished with status FAILURE\n")
    assert echoed[0] == "       1 of 2 points failed: server start: boom (cc-b2)"
    assert echoed[1].startswith("  FAIL check-points (") and len(echoed) == 2
