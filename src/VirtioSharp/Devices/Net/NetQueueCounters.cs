namespace VirtioSharp.Devices.Net;

/// <summary>
/// One queue's counters: written only by its owner thread (plain stores, no locked instructions per packet), read by
/// anyone through <see cref="NetDeviceStats"/>.
/// </summary>
internal sealed class NetQueueCounters
{
    public long Packets, Bytes;
    // Transmit: chains dropped, by reason.
    public long TxShort, TxOversize, TxBadGso, TxBadCsum, TxLinkDown, TxPortDropped, TxFault;
    // Receive: frames the port lost, frames filtered, headers the port gave that the driver did not negotiate,
    // buffers too small to hold a header, rounds that found no buffers, buffers beyond the first of merged frames.
    public long RxLost, RxFiltered, RxBadHeader, RxBadBuffers, RxNoBuffers, RxMerged;
    // Control: commands answered OK, answered ERR, chains that could not even be answered.
    public long CtrlOk, CtrlErr, CtrlMalformed;
    // Frames that went through the device's copy buffer (the address space hands out no host memory).
    public long Copied;

    public static void Add(ref long counter, long n = 1) => Volatile.Write(ref counter, counter + n);
}
