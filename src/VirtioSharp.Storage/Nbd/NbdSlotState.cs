namespace VirtioSharp.Storage.Nbd;

/// <summary>Where an <see cref="NbdSlot"/> is in its life.</summary>
internal enum NbdSlotState : byte
{
    /// <summary>On the queue's free list.</summary>
    Free,
    /// <summary>Submitted, not yet kicked (owner thread only).</summary>
    Pending,
    /// <summary>Kicked: the connection owns it until it completes.</summary>
    Active,
    /// <summary>Completion posted, waiting to be reaped.</summary>
    Done,
}
