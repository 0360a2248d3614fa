import os

# Every pass verifies the graph it produces while the suite runs.
os.environ["CHAINRULE_VERIFY"] = "1"
