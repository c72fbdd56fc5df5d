"""The course machinery around the sections: running notebooks, their widgets, the site.

- ``runner``    headless notebook runs with papermill (``slmops run``), one executed copy each
- ``watchdog``  the papermill engine that notices a kernel message that never came
- ``widgets``   notebook widgets, thin views over tested functions
- ``site``      the executed notebooks as a static site (``slmops site``)
"""
