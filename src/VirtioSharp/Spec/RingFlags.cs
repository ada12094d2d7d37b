namespace VirtioSharp.Spec;

/// <summary>Flags of the avail ring (VIRTQ_AVAIL_F_NO_INTERRUPT) and used ring (VIRTQ_USED_F_NO_NOTIFY).</summary>
internal static class RingFlags
{
    public const ushort AvailNoInterrupt = 1;
    public const ushort UsedNoNotify = 1;
}
