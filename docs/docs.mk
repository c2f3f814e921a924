# Man pages: docs/<name>.<section>.md rendered with go-md2man (Debian and
# Fedora package go-md2man) into docs/man/<name>.<section>, which
# `make install` installs when present. Included by the Makefile.
# Only <name>.<section>.md files are man pages: the other docs/*.md (README.md,
# annotations.md, ...) are the Markdown reference and are not rendered.

GOMD2MAN ?= go-md2man
MAN_SOURCES := $(wildcard docs/*.[0-9].md)
MAN_PAGES   := $(patsubst docs/%.md,docs/man/%,$(MAN_SOURCES))

docs: $(MAN_PAGES)

docs/man/%: docs/%.md
	@mkdir -p docs/man
	$(GOMD2MAN) -in $< -out $@

.PHONY: clean-docs
clean-docs:
	rm -rf docs/man
