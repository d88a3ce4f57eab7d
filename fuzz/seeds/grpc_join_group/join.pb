
gt"sticky(N