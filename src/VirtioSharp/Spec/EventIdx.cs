namespace VirtioSharp.Spec;

/// <summary>The EVENT_IDX test (§2.7.7.2): should a side that published up to <paramref name="newIdx"/> notify?</summary>
public static class EventIdx
{
    public static bool NeedEvent(ushort eventIdx, ushort newIdx, ushort oldIdx) =>
        (ushort)(newIdx - eventIdx - 1) < (ushort)(newIdx - oldIdx);
}
