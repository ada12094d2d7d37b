using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// vhost-user seeds: the handshake QEMU makes, a memory table on a sealed memfd, one split ring configured and
/// started with kick and call eventfds, then stopped; plus the inflight and IOTLB paths, and messages carrying 8
/// descriptors (the back-end's cap) and 16 of every kind (over it).
/// </summary>
public static class VhostStreamSeeds
{
    private const ulong Uaddr = 0x7f00_0000_0000;

    private sealed class Stream
    {
        private readonly InputBuilder _b = new();

        public Stream Msg(VhostRequest req, byte[] payload, params VhostStreamTarget.FdKind[] fds)
        {
            // Up to 3 descriptors count themselves; 8..23 are written as 0xF0 + (count - 8).
            _b.U8((int)req).U8(0).U8(payload.Length).Bytes(payload).U8(fds.Length <= 3 ? fds.Length : 0xF0 + fds.Length - VhostStreamTarget.ManyFdsBase);
            foreach (var f in fds) _b.U8((int)f);
            return this;
        }

        public Stream U64(VhostRequest req, ulong v) => Msg(req, new InputBuilder().U64(v).ToArray());
        public Stream State(VhostRequest req, uint index, uint num) => Msg(req, new InputBuilder().U32(index).U32(num).ToArray());
        public byte[] ToArray() => _b.ToArray();
    }

    private static byte[] MemTable() =>
        new InputBuilder().U32(1).U32(0).U64(0).U64(VhostStreamTarget.MemFdBytes).U64(Uaddr).U64(0).ToArray();

    private static byte[] Addr(uint index) =>
        new InputBuilder().U32(index).U32(0).U64(Uaddr).U64(Uaddr + 0x2000).U64(Uaddr + 0x1000).U64(0).ToArray();

    private static Stream Handshake(ulong features)
    {
        const ulong protocol = 1UL << 30;
        return new Stream()
            .Msg(VhostRequest.GetFeatures, [])
            .Msg(VhostRequest.GetProtocolFeatures, [])
            // MQ, REPLY_ACK, BACKEND_REQ, CONFIG, RESET_DEVICE, CONFIGURE_MEM_SLOTS, STATUS, INFLIGHT_SHMFD (as offered).
            .U64(VhostRequest.SetProtocolFeatures, 1 | 1 << 3 | 1 << 5 | 1 << 9 | 1 << 13 | 1 << 15 | 1 << 16 | 1 << 12)
            .Msg(VhostRequest.SetOwner, [])
            .U64(VhostRequest.SetFeatures, features | protocol);
    }

    // Packed bases carry the wrap counters (QEMU 7.2 encoding): both start at 1.
    private static Stream Ring(Stream s, uint index, uint vringBase = 0) => s
        .State(VhostRequest.SetVringNum, index, 8)
        .Msg(VhostRequest.SetVringAddr, Addr(index))
        .State(VhostRequest.SetVringBase, index, vringBase)
        .Msg(VhostRequest.SetVringCall, new InputBuilder().U64(index).ToArray(), VhostStreamTarget.FdKind.EventFd)
        .Msg(VhostRequest.SetVringKick, new InputBuilder().U64(index).ToArray(), VhostStreamTarget.FdKind.EventFd)
        .State(VhostRequest.SetVringEnable, index, 1);

    public static IEnumerable<(string Name, byte[] Input)> Generate()
    {
        const ulong version1 = 1UL << 32;
        var basic = Ring(Handshake(version1).Msg(VhostRequest.SetMemTable, MemTable(), VhostStreamTarget.FdKind.SealedMemFd), 0)
            .State(VhostRequest.GetVringBase, 0, 0);
        yield return ("split-ring-start-stop", basic.ToArray());

        var packed = Ring(Handshake(version1 | 1UL << 34).Msg(VhostRequest.SetMemTable, MemTable(), VhostStreamTarget.FdKind.SealedMemFd), 1, 0x8000_8000)
            .State(VhostRequest.GetVringBase, 1, 0);
        yield return ("packed-ring-start-stop", packed.ToArray());

        var inflight = Handshake(version1)
            .Msg(VhostRequest.GetInflightFd, new InputBuilder().U64(0).U64(0).U16(2).U16(8).ToArray())
            .Msg(VhostRequest.SetInflightFd, new InputBuilder().U64(4096).U64(0).U16(1).U16(8).ToArray(), VhostStreamTarget.FdKind.SealedMemFd)
            .Msg(VhostRequest.SetMemTable, MemTable(), VhostStreamTarget.FdKind.SealedMemFd);
        yield return ("inflight", Ring(inflight, 0).ToArray());

        var iotlb = Handshake(version1 | 1UL << 33)
            .Msg(VhostRequest.SetBackendReqFd, [], VhostStreamTarget.FdKind.Socket)
            .Msg(VhostRequest.SetMemTable, MemTable(), VhostStreamTarget.FdKind.SealedMemFd)
            .Msg(VhostRequest.IotlbMsg, new InputBuilder().U64(Uaddr).U64(0x4000).U64(Uaddr).U8(3).U8(2).U16(0).U32(0).ToArray());
        yield return ("iotlb", Ring(iotlb, 0).Msg(VhostRequest.IotlbMsg, new InputBuilder().U64(Uaddr).U64(0x4000).U64(0).U8(0).U8(3).U16(0).U32(0).ToArray()).ToArray());

        yield return ("mem-slots", Handshake(version1)
            .Msg(VhostRequest.GetMaxMemSlots, [])
            .Msg(VhostRequest.AddMemReg, new InputBuilder().U64(0).U64(0).U64(0x4000).U64(Uaddr).U64(0).ToArray(), VhostStreamTarget.FdKind.SealedMemFd)
            .Msg(VhostRequest.AddMemReg, new InputBuilder().U64(0).U64(0x10000).U64(0x4000).U64(Uaddr + 0x10000).U64(0x4000).ToArray(), VhostStreamTarget.FdKind.SealedMemFd)
            .Msg(VhostRequest.RemMemReg, new InputBuilder().U64(0).U64(0).U64(0x4000).U64(Uaddr).U64(0).ToArray())
            .Msg(VhostRequest.GetConfig, new InputBuilder().U32(0).U32(60).U32(0).Bytes(new byte[60]).ToArray())
            .U64(VhostRequest.SetStatus, 0xF).Msg(VhostRequest.GetStatus, []).Msg(VhostRequest.ResetDevice, []).ToArray());

        // Eight eventfds on a message that takes one (refused by count), then sixteen of every kind (over the cap).
        var every = Enumerable.Range(0, 16).Select(i => (VhostStreamTarget.FdKind)(i % 6)).ToArray();
        yield return ("many-fds", Handshake(version1)
            .Msg(VhostRequest.SetVringCall, new InputBuilder().U64(0).ToArray(), Enumerable.Repeat(VhostStreamTarget.FdKind.EventFd, 8).ToArray())
            .ToArray());
        yield return ("over-fd-cap", Handshake(version1)
            .Msg(VhostRequest.SetMemTable, MemTable(), every)
            .ToArray());
    }
}
