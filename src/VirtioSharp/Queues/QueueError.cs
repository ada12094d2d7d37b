namespace VirtioSharp.Queues;

/// <summary>Ring rule violations, named for what the peer did.</summary>
public enum QueueError : byte
{
    None = 0,
    // Device side: the driver's rings are malformed.
    AvailIndexTooFarAhead,
    HeadOutOfRange,
    NextOutOfRange,
    ChainLoop,
    ChainTooLong,
    NestedIndirect,
    IndirectWithNext,
    IndirectNotAtHead,
    IndirectBadLength,
    ReadableAfterWritable,
    ChainTooManyBytes,
    AddressRefused,
    RingAccessFault,
    TooManyInFlight,
    /// <summary>Packed: the head's AVAIL/USED bits say "used in this lap", which no driver can write there (§2.8.1).</summary>
    DescriptorFlagsInconsistent,
    /// <summary>Packed: a descriptor after the head is not available under the wrap counter of its slot (§2.8.6).</summary>
    ChainDescriptorNotAvailable,
    /// <summary>Packed: a buffer id made available again while still outstanding (§2.8.5).</summary>
    BufferIdInUse,
    // Driver side: the device's used ring is malformed.
    UsedIndexTooFarAhead,
    UsedIdOutOfRange,
    UsedIdNotOutstanding,
    UsedLengthTooLarge,
    /// <summary>IN_ORDER split: a batch element covers more buffers than the used idx advanced by (§2.7.9).</summary>
    UsedBatchPastIndex,
}
