namespace VirtioSharp.Queues;

/// <summary>Thrown at API boundaries when a queue is used wrongly by its own caller (not by the peer).</summary>
internal sealed class VirtqueueException(string message) : InvalidOperationException(message);
