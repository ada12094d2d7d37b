using VirtioSharp.Devices.Block;

namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// One preallocated request slot of an <see cref="NbdQueue"/>. A request becomes one or more NBD commands ("parts":
/// reads and writes above the payload limit are split; a FUA write on a server without FUA gets a trailing flush);
/// up to <see cref="Window"/> parts are on the wire at once. Fields past <see cref="Tag"/> are guarded by the
/// connection's lock; the request fields are written by the owner thread before the slot is kicked.
/// </summary>
internal sealed unsafe class NbdSlot(NbdQueue queue, int index)
{
    /// <summary>Parts of one request on the wire at once (one bit each in the masks).</summary>
    public const int Window = 64;

    public readonly NbdQueue Queue = queue;
    public readonly int Index = index;
    public ushort Generation;
    public NbdSlotState State;

    public BlockOp Op;
    public ulong Offset, Length;
    public IoVec* Vectors;
    public int VectorCount;
    public ulong Tag;

    public ushort Command, CommandFlags;
    /// <summary>Bytes per data part (the last may be shorter); 0 for a flush.</summary>
    public ulong PartSize;
    /// <summary>Parts in all, including a trailing flush.</summary>
    public int PartCount;
    public bool TrailingFlush;

    /// <summary>Parts below it are done; the masks' bit i is part WindowBase + i.</summary>
    public int WindowBase;
    public int NextPart;
    public ulong InFlightMask, DoneMask;
    /// <summary>Read bytes (data and holes) received per part, indexed by part % Window.</summary>
    public readonly uint[] Received = new uint[Window];

    public int Error;
    public int Resends;
    /// <summary>Something of it was sent on the current connection (it counts as a resend after a reconnect).</summary>
    public bool Sent;
    public bool InSendQueue;
    public NbdSlot? NextSend;
    /// <summary>The sender is reading its memory now: completion waits for it (<see cref="DeferredComplete"/>).</summary>
    public bool SendBusy, DeferredComplete;
    /// <summary>Owner thread's list of submitted, not yet kicked slots.</summary>
    public NbdSlot? NextPending;

    public int DataParts => TrailingFlush ? PartCount - 1 : PartCount;

    public bool IsDone(int part) => part < WindowBase || (part < WindowBase + Window && (DoneMask >> (part - WindowBase) & 1) != 0);

    public ulong PartOffset(int part) => Offset + (ulong)part * PartSize;

    public uint PartLength(int part)
    {
        if (part >= DataParts) return 0;
        ulong start = (ulong)part * PartSize;
        return (uint)Math.Min(PartSize, Length - start);
    }

    /// <summary>The next part the sender may put on the wire now, or -1.</summary>
    public int NextSendable()
    {
        while (NextPart < PartCount && IsDone(NextPart)) NextPart++;
        if (NextPart >= PartCount || NextPart >= WindowBase + Window) return -1;
        // A trailing flush goes only after every data part was answered (then the server has them persisted).
        if (TrailingFlush && NextPart == PartCount - 1 && WindowBase != NextPart) return -1;
        return NextPart;
    }

    /// <summary>Marks <paramref name="part"/> answered and slides the window; true when every part is done.</summary>
    public bool MarkDone(int part)
    {
        int bit = part - WindowBase;
        InFlightMask &= ~(1UL << bit);
        DoneMask |= 1UL << bit;
        while ((DoneMask & 1) != 0 && WindowBase < PartCount)
        {
            DoneMask >>= 1;
            InFlightMask >>= 1;
            WindowBase++;
        }
        return WindowBase >= PartCount;
    }

    /// <summary>Forgets what was on the wire of a connection that broke: unanswered parts go out again.</summary>
    public void ResetForResend()
    {
        InFlightMask = 0;
        NextPart = WindowBase;
        Sent = false;
    }
}
