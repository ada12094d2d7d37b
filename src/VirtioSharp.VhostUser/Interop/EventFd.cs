namespace VirtioSharp.VhostUser.Interop;

/// <summary>An eventfd (kick, call, err): 8-byte counter writes and reads.</summary>
internal sealed unsafe class EventFd : IDisposable
{
    public EventFd(SafeFd fd) => Handle = fd;

    public SafeFd Handle { get; }

    public static EventFd Create(bool nonBlocking = false)
    {
        int fd = LibC.EventFd(0, LibC.EFD_CLOEXEC | (nonBlocking ? LibC.EFD_NONBLOCK : 0));
        if (fd < 0) throw new IOException($"eventfd failed: {LibC.Describe(LibC.Errno)}");
        return new EventFd(new SafeFd(fd));
    }

    /// <summary>Adds 1 to the counter (wakes a waiter). Errors are ignored: a closed peer just misses the signal.</summary>
    public void Signal()
    {
        ulong one = 1;
        bool added = false;
        try
        {
            Handle.DangerousAddRef(ref added);
            LibC.Write(Handle.Fd, &one, 8);
        }
        catch (ObjectDisposedException) { }
        finally { if (added) Handle.DangerousRelease(); }
    }

    /// <summary>Reads and clears the counter (non-blocking fds return 0 when nothing is pending).</summary>
    public ulong Drain()
    {
        ulong v = 0;
        bool added = false;
        try
        {
            Handle.DangerousAddRef(ref added);
            return LibC.Read(Handle.Fd, &v, 8) == 8 ? v : 0;
        }
        finally { if (added) Handle.DangerousRelease(); }
    }

    /// <summary>Reads and clears the counter: 0 on success, otherwise the errno (EAGAIN: nothing pending on a non-blocking fd).</summary>
    public int Read(out ulong value)
    {
        ulong v = 0;
        bool added = false;
        try
        {
            Handle.DangerousAddRef(ref added);
            nint n = LibC.Read(Handle.Fd, &v, 8);
            value = v;
            return n == 8 ? 0 : n < 0 ? LibC.Errno : LibC.EINVAL;
        }
        finally { if (added) Handle.DangerousRelease(); }
    }

    /// <summary>Clears the counter only if it is set, so the read cannot block even if the peer made the fd blocking.</summary>
    public void DrainIfReadable()
    {
        bool added = false;
        try
        {
            Handle.DangerousAddRef(ref added);
            var p = new LibC.PollFd { Fd = Handle.Fd, Events = LibC.POLLIN };
            if (LibC.Poll(&p, 1, 0) == 1 && (p.REvents & LibC.POLLIN) != 0)
            {
                ulong v;
                LibC.Read(Handle.Fd, &v, 8);
            }
        }
        catch (ObjectDisposedException) { }
        finally { if (added) Handle.DangerousRelease(); }
    }

    /// <summary>Waits until one of <paramref name="fds"/> is readable; returns its index, -1 on timeout.</summary>
    public static int WaitAny(ReadOnlySpan<SafeFd> fds, int timeoutMs)
    {
        Span<LibC.PollFd> p = stackalloc LibC.PollFd[fds.Length];
        for (int i = 0; i < fds.Length; i++) p[i] = new LibC.PollFd { Fd = fds[i].Fd, Events = LibC.POLLIN };
        while (true)
        {
            int r;
            fixed (LibC.PollFd* pp = p) r = LibC.Poll(pp, (nuint)p.Length, timeoutMs);
            if (r < 0)
            {
                if (LibC.Errno == LibC.EINTR) continue;
                throw new IOException($"poll failed: {LibC.Describe(LibC.Errno)}");
            }
            if (r == 0) return -1;
            for (int i = 0; i < p.Length; i++) if (p[i].REvents != 0) return i;
        }
    }

    public void Dispose() => Handle.Dispose();
}
