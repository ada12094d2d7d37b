namespace VirtioSharp.Queues;

/// <summary>A chain an inflight log recorded before a restart: its log entry, pop order and ring descriptors.</summary>
public readonly record struct RecordedChain(ushort Entry, ulong Counter, Spec.PackedDesc[] Descriptors);
