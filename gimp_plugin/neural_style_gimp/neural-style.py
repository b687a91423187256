#!/usr/bin/env python3
"""GIMP 3 plug-in: neural style transfer (Filters > Artistic > Neural Style...). GIMP runs this
file; the neural_style_gimp package beside it does the work, with the style daemon."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from neural_style_gimp.plugin import main

main()
