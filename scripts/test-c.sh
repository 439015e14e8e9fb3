#!/usr/bin/env bash
echo "no c tests yet"
