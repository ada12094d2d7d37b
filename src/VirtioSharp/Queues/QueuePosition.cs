namespace VirtioSharp.Queues;

/// <summary>
/// Where a device queue stands: the next avail entry (split) or ring offset (packed) it will take, the next used
/// slot it will write, and for packed rings the two wrap counters (virtio 1.2 §2.8.1; always true for split).
/// What a back-end saves when a ring stops and resumes from after a restart or a migration.
/// </summary>
public readonly record struct QueuePosition(ushort NextAvail, bool AvailWrap, ushort NextUsed, bool UsedWrap)
{
    /// <summary>A split ring's position (no wrap counters).</summary>
    public static QueuePosition Split(ushort nextAvail, ushort nextUsed) => new(nextAvail, true, nextUsed, true);
}
