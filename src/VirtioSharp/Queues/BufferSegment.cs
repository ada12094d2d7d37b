namespace VirtioSharp.Queues;

/// <summary>A guest-physical buffer the driver hands to a queue.</summary>
public readonly record struct BufferSegment(ulong Gpa, uint Length);
