// fuzz entry in FuzzEntry.swift
