"""`python -m keras_margin compare | identify ...`: see `keras_margin.verify`."""

from keras_margin.verify import main

raise SystemExit(main())
