namespace VirtioSharp.Spec;

/// <summary>The EVENT_IDX test (§2.7.7.2), shared by the split and packed rings and by both sides.</summary>
public static class EventIdx
{
    /// <summary>
    /// Should a side that moved its index from <paramref name="oldIdx"/> to <paramref name="newIdx"/> notify, given the
    /// other side asked to be told once <paramref name="eventIdx"/> is passed? Wrapping 16-bit arithmetic, as vring_need_event.
    /// </summary>
    public static bool NeedEvent(ushort eventIdx, ushort newIdx, ushort oldIdx) =>
        (ushort)(newIdx - eventIdx - 1) < (ushort)(newIdx - oldIdx);
}
