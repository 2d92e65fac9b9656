"""Examples behind ``hwreshape demo``: one stage module per capability and the reference model zoo.

Nothing in the plugin packages imports from here.
"""
