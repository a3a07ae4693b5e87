"""`python -m keras_margin compare | identify ...`: see `keras_margin.cli`."""

from keras_margin.cli import main

raise SystemExit(main())
