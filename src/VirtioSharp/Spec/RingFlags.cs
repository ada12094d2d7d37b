namespace VirtioSharp.Spec;

/// <summary>Flags of the avail ring (VIRTQ_AVAIL_F_NO_INTERRUPT) and used ring (VIRTQ_USED_F_NO_NOTIFY).</summary>
public static class RingFlags
{
    /// <summary>VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks not to be interrupted (§2.7.7).</summary>
    public const ushort AvailNoInterrupt = 1;
    /// <summary>VIRTQ_USED_F_NO_NOTIFY: the device asks not to be notified (§2.7.10).</summary>
    public const ushort UsedNoNotify = 1;
}
