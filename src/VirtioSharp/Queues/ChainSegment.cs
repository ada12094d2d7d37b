namespace VirtioSharp.Queues;

/// <summary>One validated buffer of a chain: a device address, a length, and whether the device may write it.</summary>
public readonly record struct ChainSegment(ulong Addr, uint Length, bool Writable);
