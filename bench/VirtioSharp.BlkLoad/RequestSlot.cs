namespace VirtioSharp.BlkLoad;

/// <summary>One request kept in flight for the whole run: its header/status and data buffers never move.</summary>
internal sealed class RequestSlot
{
    public ulong HeaderGpa;   // 16-byte header, then the status byte
    public ulong DataGpa;
    public long Start;        // Stopwatch timestamp of the submission
}
