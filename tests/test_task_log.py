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
