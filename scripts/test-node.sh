#!/usr/bin/env bash
echo "no node tests yet"
